-- Shared fragment (not a report), inside a WITH: `rates`, the project's {currency}/X rates per day
-- (POST /api/rates; a join takes the latest on or before a day), and `has_payments`: whether the
-- range has any payment or refund (revenue is then payments + refunds, else the sales' values).
    rates AS (
        SELECT currency, day, rate FROM currency_rates FINAL
        WHERE project = {project:String} AND base = {currency:String}
    ),
    (SELECT count() > 0 FROM conversions FINAL
     WHERE project = {project:String} AND kind IN ('payment', 'refund')
       AND at >= {from:DateTime64(3, 'UTC')} AND at < {to:DateTime64(3, 'UTC')}) AS has_payments,
