"""The collector's routes by area, each module a `routes(router, ctx)` that registers its routes on
the app's router over the shared `context.Context`; collector/app.py assembles them.

ingest (the hot POST /collect, /v1/*, and `Edge`), webhooks (/webhooks/{vendor}/{key}), imports
(/api/spend, /api/rates), calltracking (/api/calltracking/lease), reports (/api/reports/{name}),
admin (/api/admin/projects...), static (/tracker.js, /dashboard, /static/*), health (/healthz,
/readyz, /metrics)."""
