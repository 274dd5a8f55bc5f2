/* moneytrail dashboard: the channel report of one project, live, and the reports around it:
 * cohorts (a heatmap), the funnel by channel, top paths, and a channel's campaigns (drill-down).
 *
 * Served by the collector itself (/dashboard, /static/...); it talks only to this origin's report
 * API (GET /api/reports/{channels,cohorts,funnel,paths,campaigns}) and loads nothing from anywhere
 * else. A report this server does not serve (404 unknown_report) leaves its panel with a note.
 *
 * The read token arrives once in the URL fragment (/dashboard#token=rt_...), which browsers never
 * send to servers; it is moved to sessionStorage (this tab only) and the fragment is removed from
 * the address bar at once, so it does not end up in screenshots, bookmarks or the history. Without
 * a token, or when the API refuses it (401/403), a form asks for it and shows the API's reason.
 *
 * For tests and scrapers every number in the table is a cell with data-channel (the API's channel,
 * "__total__" for the total row), data-field (the API's field name) and data-raw (the API's value
 * as text: decimal strings as they came, numbers as JavaScript prints them, null as "null").
 * The funnel table follows the same scheme; the cohort heatmap's cells carry data-cohort and
 * data-month; the paths and campaigns tables data-row (the row's index among those shown) and
 * data-field. Every panel (#panel-NAME) carries data-state (ok, unknown, error), data-from,
 * data-to and data-model of what it shows.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "moneytrail.read_token";
  var API = "/api/reports/channels";
  var REFRESH_MS = 15000;
  var TOTAL = "__total__";
  var UNATTRIBUTED = "(unattributed)";
  var THIN = "\u202F";  // narrow no-break space: thousands separator
  var NBSP = "\u00A0";
  var MINUS = "\u2212";
  var DASH = "\u2014";
  var SYMBOLS = { KZT: "\u20B8", RUB: "\u20BD" };
  var MODELS = {
    last_non_direct: {
      name: "Last non-direct click",
      help: "A sale goes to the last visit that came from an ad, a search engine, a link or an email; " +
            "a direct visit (typed address, bookmark) gets it only when there was nothing else. " +
            "Yandex Metrica and Google Analytics report this way by default."
    },
    last_touch: {
      name: "Last click",
      help: "A sale goes to the very last visit before it, even a direct one."
    },
    first_touch: {
      name: "First click",
      help: "A sale goes to the channel that first brought the visitor within the lookback window: " +
            "the channels that find new customers."
    },
    linear: {
      name: "Linear",
      help: "Every visit within the lookback window gets an equal share of a sale."
    },
    time_decay: {
      name: "Time decay",
      help: "Every visit gets a share that halves for each 7 days it lies before the sale: " +
            "the visits that closed the deal weigh most."
    },
    position_based: {
      name: "Position-based",
      help: "The first and the last visit get 40% each, the visits between share 20% (two visits: 50/50)."
    }
  };
  // [field, kind]: the table's columns after the channel, in order
  var COLUMNS = [
    ["visits", "count"], ["leads", "count"], ["sales", "count"], ["conversion", "percent"],
    ["revenue", "money"], ["spend", "money"], ["cpl", "money"], ["cpo", "money"],
    ["roi", "percent"], ["average_check", "money"]
  ];

  var $ = function (id) { return document.getElementById(id); };
  var memoryToken = null;  // when sessionStorage is unavailable (privacy modes)
  var state = {
    data: null, text: null, sortKey: null, sortDir: "desc", seq: 0, inflight: null,
    loadedAt: 0, currencyTouched: false, charts: {}, debounce: null, roiRows: [], updated: ""
  };

  /* ---------- the read token ---------- */

  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || memoryToken; } catch (e) { return memoryToken; }
  }

  function setToken(token) {
    memoryToken = token;
    try { sessionStorage.setItem(TOKEN_KEY, token); memoryToken = null; } catch (e) { /* kept in memory */ }
  }

  function clearToken() {
    memoryToken = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing kept */ }
  }

  /** Takes #token=... once, keeps it for this tab, and removes it from the address bar. */
  function takeTokenFromFragment() {
    var hash = location.hash.replace(/^#/, "");
    if (!hash) return false;
    var params = new URLSearchParams(hash);
    if (!params.has("token")) return false;
    var token = (params.get("token") || "").trim();
    params.delete("token");
    var rest = params.toString();
    history.replaceState(history.state, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    if (token) setToken(token);
    return !!token;
  }

  function askToken(message) {
    $("app").hidden = true;
    $("signout").hidden = true;
    $("token-panel").hidden = false;
    var msg = $("token-message");
    msg.textContent = message || "";
    msg.hidden = !message;
    state.updated = "";
    $("updated").textContent = "signed out";
    setDot("off");
    var input = $("token-input");
    input.value = "";
    input.focus();
  }

  function showApp() {
    $("token-panel").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
  }

  /* ---------- numbers for Russian and Kazakh readers ---------- */

  function plain(raw) {
    if (typeof raw === "number") {
      var s = String(raw);
      return /e/i.test(s) ? raw.toFixed(12) : s;
    }
    return String(raw).trim();
  }

  /** A decimal as {neg, int, frac} rounded to places, half away from zero, exactly (no floats). */
  function roundDec(raw, places) {
    var s = plain(raw);
    var neg = s.charAt(0) === "-";
    if (neg || s.charAt(0) === "+") s = s.slice(1);
    var dot = s.indexOf(".");
    var int = dot < 0 ? s : s.slice(0, dot);
    var frac = dot < 0 ? "" : s.slice(dot + 1);
    if (!/^\d*$/.test(int) || !/^\d*$/.test(frac)) return null;
    int = int || "0";
    var up = frac.length > places && frac.charAt(places) >= "5";
    frac = (frac + "0".repeat(places)).slice(0, places);
    var digits = int + frac;
    if (up) {
      var arr = digits.split(""), i = arr.length - 1;
      for (; i >= 0; i--) {
        if (arr[i] === "9") { arr[i] = "0"; } else { arr[i] = String(+arr[i] + 1); break; }
      }
      digits = (i < 0 ? "1" : "") + arr.join("");
    }
    int = digits.slice(0, digits.length - places).replace(/^0+(?=\d)/, "");
    frac = digits.slice(digits.length - places);
    if (/^0*$/.test(int + frac)) neg = false;
    return { neg: neg, int: int, frac: frac };
  }

  /** The decimal times 100, exactly (for fractions shown as percentages). */
  function times100(raw) {
    var s = plain(raw), sign = "";
    if (s.charAt(0) === "-") { sign = "-"; s = s.slice(1); }
    var dot = s.indexOf(".");
    var int = dot < 0 ? s : s.slice(0, dot);
    var frac = (dot < 0 ? "" : s.slice(dot + 1)) + "00";
    return sign + ((int + frac.slice(0, 2)).replace(/^0+(?=\d)/, "") || "0") + "." + frac.slice(2);
  }

  function group(int) { return int.replace(/\B(?=(\d{3})+(?!\d))/g, THIN); }

  function fmtDec(raw, places) {
    var r = roundDec(raw, places);
    if (!r) return String(raw);
    return (r.neg ? MINUS : "") + group(r.int) + (places ? "," + r.frac : "");
  }

  function isNull(raw) { return raw === null || raw === undefined || raw === ""; }

  function symbol(currency) { return SYMBOLS[currency] || currency || ""; }

  function fmtMoney(raw, currency, places) {
    if (isNull(raw)) return DASH;
    return fmtDec(raw, places || 0) + NBSP + symbol(currency);
  }

  function fmtCount(raw) { return isNull(raw) ? DASH : fmtDec(raw, 0); }

  function fmtPercent(raw) { return isNull(raw) ? DASH : fmtDec(times100(raw), 1) + THIN + "%"; }

  function format(kind, raw, currency) {
    if (kind === "money") return fmtMoney(raw, currency);
    if (kind === "percent") return fmtPercent(raw);
    return fmtCount(raw);
  }

  function exact(kind, raw, currency) {
    if (isNull(raw)) return "no value";
    if (kind === "money") return fmtMoney(raw, currency, 2);
    if (kind === "percent") return fmtDec(times100(raw), 2) + THIN + "%";
    return fmtDec(raw, 0);
  }

  function negative(raw) { return !isNull(raw) && plain(raw).charAt(0) === "-" && Number(raw) !== 0; }

  function ruDate(iso) { var p = String(iso || "").split("-"); return p.length === 3 ? p[2] + "." + p[1] + "." + p[0] : iso; }

  /* ---------- controls ---------- */

  function isoDay(d) {
    var m = d.getMonth() + 1, day = d.getDate();
    return d.getFullYear() + "-" + (m < 10 ? "0" : "") + m + "-" + (day < 10 ? "0" : "") + day;
  }

  function lastDays(n) {
    var to = new Date(), from = new Date();
    from.setDate(to.getDate() - (n - 1));
    return [isoDay(from), isoDay(to)];
  }

  function initControls() {
    var q = new URLSearchParams(location.search);
    var range = lastDays(30);
    $("from").value = valid(q.get("from"), /^\d{4}-\d{2}-\d{2}$/) || range[0];
    $("to").value = valid(q.get("to"), /^\d{4}-\d{2}-\d{2}$/) || range[1];
    $("model").value = MODELS[q.get("model")] ? q.get("model") : "last_non_direct";
    if (valid(q.get("currency"), /^[A-Za-z]{3}$/)) { $("currency").value = q.get("currency").toUpperCase(); state.currencyTouched = true; }
    if (valid(q.get("lookback_days"), /^\d{1,4}$/)) $("lookback").value = q.get("lookback_days");
    modelHelp();
    markPreset();

    $("controls").addEventListener("submit", function (e) { e.preventDefault(); changed(0); });
    ["from", "to", "model", "lookback"].forEach(function (id) {
      $(id).addEventListener("change", function () { changed(250); });
    });
    $("model").addEventListener("change", modelHelp);
    $("currency").addEventListener("input", function () {
      var c = $("currency");
      c.value = c.value.toUpperCase();
      state.currencyTouched = c.value !== "";
    });
    $("currency").addEventListener("change", function () { changed(0); });
    Array.prototype.forEach.call(document.querySelectorAll("[data-days]"), function (b) {
      b.addEventListener("click", function () {
        var r = lastDays(+b.getAttribute("data-days"));
        $("from").value = r[0];
        $("to").value = r[1];
        changed(0);
      });
    });
  }

  function valid(v, re) { return v && re.test(v) ? v : null; }

  function modelHelp() {
    var m = MODELS[$("model").value];
    $("model-help").textContent = m ? m.name + ": " + m.help : "";
  }

  function markPreset() {
    var from = $("from").value, to = $("to").value;
    Array.prototype.forEach.call(document.querySelectorAll("[data-days]"), function (b) {
      var r = lastDays(+b.getAttribute("data-days"));
      b.setAttribute("aria-pressed", String(r[0] === from && r[1] === to));
    });
  }

  /** The query for the API, or null (and a message) when a control is not valid. */
  function params() {
    var p = new URLSearchParams(), from = $("from").value, to = $("to").value;
    var currency = $("currency").value.trim().toUpperCase(), lookback = $("lookback").value.trim();
    if (!from || !to) return fail("Choose both dates.");
    if (from > to) return fail("'From' is after 'To'.");
    if (currency && !/^[A-Z]{3}$/.test(currency)) return fail("Currency is a 3-letter ISO code, such as KZT, RUB or USD.");
    if (lookback && !(/^\d+$/.test(lookback) && +lookback >= 1 && +lookback <= 3650)) {
      return fail("Lookback is a whole number of days from 1 to 3650.");
    }
    p.set("from", from);
    p.set("to", to);
    p.set("model", $("model").value);
    if (currency) p.set("currency", currency);
    if (lookback) p.set("lookback_days", lookback);
    p.set("format", "json");
    return p;
  }

  function fail(message) { showError(message); return null; }

  function changed(delay) {
    markPreset();
    clearTimeout(state.debounce);
    state.debounce = setTimeout(function () {
      var p = params();
      if (!p) return;
      var shown = new URLSearchParams(p);
      shown.delete("format");
      if (!state.currencyTouched) shown.delete("currency");
      history.replaceState(history.state, "", location.pathname + "?" + shown.toString());
      load();
    }, delay);
  }

  /* ---------- loading ---------- */

  function setDot(kind) { $("live-dot").className = "dot " + kind; }

  function showError(message) { var e = $("error"); e.textContent = message; e.hidden = false; }

  function hideError() { $("error").hidden = true; }

  function detailOf(text) {
    try { var j = JSON.parse(text); return j && (j.detail || j.reason) ? String(j.detail || j.reason) : ""; } catch (e) { return ""; }
  }

  function load() {
    var token = getToken();
    if (!token) { askToken(""); return; }
    var p = params();
    if (!p) return;
    if (state.inflight) state.inflight.abort();
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var my = ++state.seq;
    state.inflight = ctl;
    setDot("busy");
    $("app").setAttribute("aria-busy", "true");
    loadPanels(p, token);
    fetch(API + "?" + p.toString(), {
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
      cache: "no-store", credentials: "omit", redirect: "error", referrerPolicy: "no-referrer",
      signal: ctl ? ctl.signal : undefined
    }).then(function (res) {
      return res.text().then(function (text) { return { res: res, text: text }; });
    }).then(function (got) {
      if (my !== state.seq) return;
      var res = got.res, text = got.text;
      if (res.status === 401 || res.status === 403) {
        clearToken();
        state.data = state.text = null;
        askToken("The report API refused the token: " + (detailOf(text) || "HTTP " + res.status) + ".");
        return;
      }
      if (!res.ok) {
        showError(detailOf(text) || ("The report could not be loaded (HTTP " + res.status + ")."));
        $("app").classList.add("stale");
        setDot("error");
        return;
      }
      var data = JSON.parse(text);
      hideError();
      $("app").classList.remove("stale");
      if (text !== state.text) {  // an unchanged answer redraws nothing
        state.text = text;
        state.data = data;
        render();
      }
      state.loadedAt = Date.now();
      state.updated = "updated " + hhmmss(new Date());
      $("updated").textContent = state.updated;
      $("updated").setAttribute("data-updated-at", new Date().toISOString());
      setDot(document.hidden ? "off" : "live");
    }).catch(function (err) {
      if (err && err.name === "AbortError") return;
      if (my !== state.seq) return;
      showError("The server is not reachable; retrying every " + REFRESH_MS / 1000 + " s.");
      setDot("error");
    }).then(function () {
      if (my === state.seq) { state.inflight = null; $("app").removeAttribute("aria-busy"); }
    });
  }

  function hhmmss(d) {
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map(function (n) { return (n < 10 ? "0" : "") + n; }).join(":");
  }

  function tick() {
    if (document.hidden || !getToken() || $("app").hidden || state.inflight) return;
    load();
  }

  /* ---------- rendering ---------- */

  function render() {
    var d = state.data;
    if (!d) return;
    if (!state.currencyTouched && d.currency) $("currency").value = d.currency;
    if (!$("lookback").value && d.lookback_days) $("lookback").value = String(d.lookback_days);
    var model = MODELS[d.model] ? MODELS[d.model].name : d.model;
    $("table-sub").textContent = ruDate(d.from) + " \u2013 " + ruDate(d.to) + " \u00B7 " + model +
      " \u00B7 lookback " + d.lookback_days + " days \u00B7 " + d.currency;
    $("foot-params").textContent = "Report " + d.report + ", " + d.model + ".";
    renderKpis(d);
    renderInsight(d);
    renderTable();
    renderCharts(d);
  }

  function renderKpis(d) {
    var t = d.total || {};
    var kinds = { revenue: "money", spend: "money", roi: "percent", leads: "count", sales: "count", cpl: "money" };
    Object.keys(kinds).forEach(function (f) {
      var el = document.querySelector('[data-kpi="' + f + '"]');
      el.textContent = format(kinds[f], t[f], d.currency);
      el.title = exact(kinds[f], t[f], d.currency);
      el.classList.toggle("neg", f === "roi" && negative(t[f]));
    });
  }

  function strong(text) { var b = document.createElement("strong"); b.textContent = text; return b; }

  function renderInsight(d) {
    var box = $("insight"), parts = [];
    var rows = (d.rows || []).filter(function (r) { return r.channel !== UNATTRIBUTED; });
    var total = Number((d.total || {}).revenue) || 0;
    var byRevenue = rows.filter(function (r) { return Number(r.revenue) > 0; })
      .sort(function (a, b) { return Number(b.revenue) - Number(a.revenue); });
    if (byRevenue.length) {
      var top = byRevenue[0];
      var share = total > 0 ? " (" + fmtDec(times100(Number(top.revenue) / total), 0) + THIN + "% of revenue)" : "";
      parts.push([strong(top.channel), " brings the most money: " + fmtMoney(top.revenue, d.currency) + share + "."]);
    }
    var withRoi = rows.filter(function (r) { return !isNull(r.roi); })
      .sort(function (a, b) { return Number(b.roi) - Number(a.roi); });
    if (withRoi.length > 1 && Number(withRoi[0].roi) > 0) {
      parts.push(["Best return on spend: ", strong(withRoi[0].channel), ", ROI " + fmtPercent(withRoi[0].roi) + "."]);
    }
    var losing = withRoi.filter(function (r) { return Number(r.roi) < 0; });
    if (losing.length) {
      var l = ["Spends more than it earns: "];
      losing.forEach(function (r, i) { l.push(i ? ", " : "", strong(r.channel), " (ROI " + fmtPercent(r.roi) + ")"); });
      l.push(".");
      parts.push(l);
    }
    var un = (d.rows || []).filter(function (r) { return r.channel === UNATTRIBUTED; })[0];
    if (un && Number(un.revenue) > 0) {
      parts.push([fmtMoney(un.revenue, d.currency) + " of revenue has no visit within the lookback window (unattributed)."]);
    }
    box.replaceChildren();
    parts.forEach(function (nodes) {
      var span = document.createElement("span");
      nodes.forEach(function (n) { span.append(n); });
      box.append(span, " ");
    });
    box.hidden = parts.length === 0;
  }

  function numberCell(tag, channel, field, kind, raw, currency) {
    var c = document.createElement(tag);
    c.setAttribute("data-channel", channel);
    c.setAttribute("data-field", field);
    c.setAttribute("data-raw", raw === null || raw === undefined ? "null" : String(raw));
    c.className = "num" + (isNull(raw) ? " null" : Number(raw) === 0 ? " zero" : "") + (negative(raw) ? " neg" : "");
    c.textContent = format(kind, raw, currency);
    c.title = exact(kind, raw, currency);
    return c;
  }

  function sortValue(row, key) {
    var v = row[key];
    if (key === "channel") return String(v || "").toLocaleLowerCase();
    return isNull(v) ? null : Number(v);
  }

  function sortedRows() {
    var rows = (state.data.rows || []).slice(), key = state.sortKey, dir = state.sortDir === "asc" ? 1 : -1;
    if (key) {
      rows.sort(function (a, b) {
        var x = sortValue(a, key), y = sortValue(b, key);
        if (x === null && y === null) return 0;
        if (x === null) return 1;  // no value sorts last either way
        if (y === null) return -1;
        return x < y ? -dir : x > y ? dir : 0;
      });
    }
    // the unattributed row is not a channel: it stays at the bottom, apart
    return rows.filter(function (r) { return r.channel !== UNATTRIBUTED; })
      .concat(rows.filter(function (r) { return r.channel === UNATTRIBUTED; }));
  }

  function renderTable() {
    var d = state.data, body = document.createDocumentFragment(), foot = document.createDocumentFragment();
    var rows = sortedRows();
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      var un = r.channel === UNATTRIBUTED;
      if (un) tr.className = "unattributed";
      var th = document.createElement("th");
      th.scope = "row";
      th.className = "text";
      th.setAttribute("data-channel", r.channel);
      th.setAttribute("data-field", "channel");
      if (un) {
        th.textContent = r.channel;
      } else {  // the name opens the channel's campaigns
        var drill = document.createElement("button");
        drill.type = "button";
        drill.className = "drill-open";
        drill.setAttribute("data-drill", r.channel);
        drill.setAttribute("aria-controls", "panel-campaigns");
        drill.title = "Show the campaigns of " + r.channel;
        drill.textContent = r.channel;
        drill.addEventListener("click", function () { openDrill(r.channel); });
        th.append(drill);
      }
      if (un) {
        th.title = "Conversions with no visit within the lookback window";
        var note = document.createElement("span");
        note.className = "note";
        note.textContent = "no visit in the window";
        th.append(" ", note);
      }
      tr.append(th);
      COLUMNS.forEach(function (c) { tr.append(numberCell("td", r.channel, c[0], c[1], r[c[0]], d.currency)); });
      body.append(tr);
    });
    if (!rows.length) {
      var empty = document.createElement("tr");
      empty.className = "empty";
      var td = document.createElement("td");
      td.colSpan = COLUMNS.length + 1;
      td.textContent = "No visits, leads, sales or spend in this period. Try a wider date range.";
      empty.append(td);
      body.append(empty);
    }
    var t = d.total || {};
    if (Object.keys(t).length) {
      var tr = document.createElement("tr");
      tr.className = "total";
      var th = document.createElement("th");
      th.scope = "row";
      th.className = "text";
      th.setAttribute("data-channel", TOTAL);
      th.setAttribute("data-field", "channel");
      th.textContent = "Total";
      tr.append(th);
      COLUMNS.forEach(function (c) { tr.append(numberCell("td", TOTAL, c[0], c[1], t[c[0]], d.currency)); });
      foot.append(tr);
    }
    $("rows").replaceChildren(body);
    $("total").replaceChildren(foot);
    $("channels").setAttribute("data-model", d.model);
    $("channels").setAttribute("data-from", d.from);
    $("channels").setAttribute("data-to", d.to);
    $("channels").setAttribute("data-currency", d.currency);
  }

  function initSorting() {
    Array.prototype.forEach.call(document.querySelectorAll("#channels thead th[data-sort]"), function (th) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "sort";
      while (th.firstChild) b.append(th.firstChild);
      var arrow = document.createElement("span");
      arrow.className = "arrow";
      arrow.setAttribute("aria-hidden", "true");
      b.append(arrow);
      th.append(b);
      b.addEventListener("click", function () {
        var key = th.getAttribute("data-sort");
        if (state.sortKey === key) {
          state.sortDir = state.sortDir === "asc" ? "desc" : "asc";
        } else {
          state.sortKey = key;
          state.sortDir = key === "channel" ? "asc" : "desc";
        }
        Array.prototype.forEach.call(document.querySelectorAll("#channels thead th[data-sort]"), function (o) {
          if (o === th) o.setAttribute("aria-sort", state.sortDir === "asc" ? "ascending" : "descending");
          else o.removeAttribute("aria-sort");
        });
        if (state.data) renderTable();
      });
    });
  }

  /* ---------- charts (Chart.js 4, vendored) ---------- */

  var COLORS = { revenue: "#1f8a5b", spend: "#c2410c", roiUp: "#1f8a5b", roiDown: "#c62828", grid: "#e6e8ec", text: "#3c4452" };

  function chartBase() {
    return {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { labels: { boxWidth: 12, boxHeight: 12, color: COLORS.text } } },
      scales: {}
    };
  }

  function ensureCharts() {
    if (typeof window.Chart !== "function") return false;
    if (state.charts.rs) return true;
    var Chart = window.Chart;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = COLORS.text;
    var cur = function () { return state.data ? state.data.currency : ""; };

    var rs = chartBase();
    rs.scales = {
      x: { grid: { display: false }, ticks: { autoSkip: false, maxRotation: 30 } },
      y: { beginAtZero: true, grid: { color: COLORS.grid }, ticks: { callback: function (v) { return axisMoney(v); } } }
    };
    rs.plugins.tooltip = { callbacks: { label: function (c) {
      return c.dataset.label + ": " + fmtMoney(c.raw, cur());
    } } };
    state.charts.rs = new Chart($("chart-revenue-spend"), {
      type: "bar",
      data: { labels: [], datasets: [
        { label: "Revenue", data: [], backgroundColor: COLORS.revenue, borderRadius: 3, maxBarThickness: 36 },
        { label: "Spend", data: [], backgroundColor: COLORS.spend, borderRadius: 3, maxBarThickness: 36 }
      ] },
      options: rs
    });

    var roi = chartBase();
    roi.indexAxis = "y";
    roi.plugins.legend = { display: false };
    roi.plugins.tooltip = { callbacks: { label: function (c) {
      var r = state.roiRows[c.dataIndex];
      return "ROI " + (r ? fmtPercent(r.roi) : DASH);
    } } };
    roi.scales = {
      x: { grid: { color: COLORS.grid }, ticks: { callback: function (v) { return fmtDec(v, 0) + THIN + "%"; } } },
      y: { grid: { display: false }, ticks: { autoSkip: false } }
    };
    state.charts.roi = new Chart($("chart-roi"), {
      type: "bar",
      data: { labels: [], datasets: [{ label: "ROI, %", data: [], backgroundColor: [], borderRadius: 3, maxBarThickness: 28 }] },
      options: roi
    });
    return true;
  }

  function axisMoney(v) {
    var a = Math.abs(v), sign = v < 0 ? MINUS : "";
    if (a >= 1e9) return sign + fmtDec(a / 1e9, a % 1e9 ? 1 : 0) + THIN + "bn";
    if (a >= 1e6) return sign + fmtDec(a / 1e6, a % 1e6 ? 1 : 0) + THIN + "M";
    if (a >= 1e4) return sign + fmtDec(a / 1e3, 0) + THIN + "k";
    return sign + fmtDec(a, 0);
  }

  function setChartEmpty(canvasId, empty, message) {
    var box = $(canvasId).parentNode, note = box.querySelector(".chart-empty");
    if (empty && !note) {
      note = document.createElement("p");
      note.className = "chart-empty";
      box.append(note);
    }
    if (note) { note.textContent = message; note.hidden = !empty; }
    $(canvasId).style.visibility = empty ? "hidden" : "visible";
  }

  function renderCharts(d) {
    if (!ensureCharts()) {
      setChartEmpty("chart-revenue-spend", true, "The chart library did not load.");
      setChartEmpty("chart-roi", true, "The chart library did not load.");
      return;
    }
    var rows = (d.rows || []).filter(function (r) { return Number(r.revenue) !== 0 || Number(r.spend) !== 0; });
    var rs = state.charts.rs;
    rs.data.labels = rows.map(function (r) { return r.channel; });
    rs.data.datasets[0].data = rows.map(function (r) { return Number(r.revenue); });
    rs.data.datasets[1].data = rows.map(function (r) { return Number(r.spend); });
    rs.update("none");
    setChartEmpty("chart-revenue-spend", !rows.length, "No revenue or spend in this period.");

    var withRoi = (d.rows || []).filter(function (r) { return !isNull(r.roi); })
      .sort(function (a, b) { return Number(b.roi) - Number(a.roi); });
    state.roiRows = withRoi;
    var roi = state.charts.roi;
    roi.data.labels = withRoi.map(function (r) { return r.channel; });
    roi.data.datasets[0].data = withRoi.map(function (r) { return Number(times100(r.roi)); });
    roi.data.datasets[0].backgroundColor = withRoi.map(function (r) { return Number(r.roi) < 0 ? COLORS.roiDown : COLORS.roiUp; });
    roi.update("none");
    setChartEmpty("chart-roi", !withRoi.length, "ROI needs spend: import ad costs (POST /api/spend).");
  }

  /* ---------- more reports: cohorts, funnel, top paths, a channel's campaigns ---------- */

  var PANELS = ["cohorts", "funnel", "paths", "campaigns"];
  var NOT_SERVED = {
    cohorts: "This server does not serve the cohorts report yet.",
    funnel: "This server does not serve the funnel report yet.",
    paths: "Top paths need the paths report, which this server does not serve yet.",
    campaigns: "The campaign drill-down needs the campaigns report, which this server does not serve yet."
  };
  var TOP_PATHS = 10;
  var panels = {};  // report name -> { seq, ctl, text, data, unknown }

  function panelState(name) {
    return panels[name] || (panels[name] = { seq: 0, ctl: null, text: null, data: null, unknown: false });
  }

  /** A note in the panel; hideBody hides what it drew (the report is not there). */
  function panelNote(name, message, hideBody) {
    var el = $("panel-" + name);
    var note = el.querySelector("[data-panel-note]");
    note.textContent = message || "";
    note.hidden = !message;
    el.querySelector("[data-panel-body]").hidden = !!hideBody;
  }

  function loadPanels(p, token) {
    PANELS.forEach(function (name) {
      if (name !== "campaigns" || state.drill) loadPanel(name, p, token);
    });
  }

  function reasonOf(text) {
    try { var j = JSON.parse(text); return j && j.reason ? String(j.reason) : ""; } catch (e) { return ""; }
  }

  function loadPanel(name, p, token) {
    var ps = panelState(name), el = $("panel-" + name);
    if (ps.unknown) return;  // the server said it has no such report: not asked again until a reload
    if (ps.ctl) ps.ctl.abort();
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var my = ++ps.seq, model = p.get("model");
    ps.ctl = ctl;
    el.setAttribute("aria-busy", "true");
    fetch("/api/reports/" + name + "?" + p.toString(), {
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
      cache: "no-store", credentials: "omit", redirect: "error", referrerPolicy: "no-referrer",
      signal: ctl ? ctl.signal : undefined
    }).then(function (res) {
      return res.text().then(function (text) { return { res: res, text: text }; });
    }).then(function (got) {
      if (my !== ps.seq) return;
      var res = got.res, text = got.text;
      if (res.status === 404 && reasonOf(text) === "unknown_report") {
        ps.unknown = true;
        ps.text = ps.data = null;
        panelNote(name, NOT_SERVED[name], true);
        el.setAttribute("data-state", "unknown");
        return;
      }
      if (!res.ok) {  // a refused token is the channel table's business: it asks for a new one
        panelNote(name, "Not loaded: " + (detailOf(text) || "HTTP " + res.status) + ".", false);
        el.setAttribute("data-state", "error");
        return;
      }
      if (text !== ps.text) {
        ps.text = text;
        ps.data = JSON.parse(text);
        RENDER[name](ps.data);
      }
      panelNote(name, "", false);
      el.setAttribute("data-from", ps.data.from);
      el.setAttribute("data-to", ps.data.to);
      el.setAttribute("data-model", model);
      el.setAttribute("data-state", "ok");
    }).catch(function (err) {
      if ((err && err.name === "AbortError") || my !== ps.seq) return;
      panelNote(name, "The server is not reachable; retrying with the table.", false);
      el.setAttribute("data-state", "error");
    }).then(function () {
      if (my === ps.seq) { ps.ctl = null; el.removeAttribute("aria-busy"); }
    });
  }

  /* exact decimal strings: sums and quotients for the heatmap's totals (BigInt, no floats) */

  function fracLen(raw) { var s = plain(raw), i = s.indexOf("."); return i < 0 ? 0 : s.length - i - 1; }

  function scaled(raw, places) {
    var r = roundDec(raw, places);
    var v = BigInt(r.int + r.frac);
    return r.neg ? -v : v;
  }

  function unscaled(v, places) {
    var neg = v < BigInt(0), digits = (neg ? -v : v).toString();
    while (digits.length <= places) digits = "0" + digits;
    var int = digits.slice(0, digits.length - places), frac = digits.slice(digits.length - places);
    return (neg ? "-" : "") + int + (places ? "." + frac : "");
  }

  function addDec(a, b) {
    var places = Math.max(fracLen(a), fracLen(b));
    return unscaled(scaled(a, places) + scaled(b, places), places);
  }

  /** a / n (n a positive whole number) at 2 places, half away from zero, as the reports round. */
  function divDec(a, n) {
    var v = scaled(a, 2), neg = v < BigInt(0), d = BigInt(n);
    var q = ((neg ? -v : v) * BigInt(2) + d) / (BigInt(2) * d);
    return unscaled(neg ? -q : q, 2);
  }

  function monthNumber(iso) { var p = String(iso).split("-"); return (+p[0]) * 12 + (+p[1]) - 1; }

  function option(value, label) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  }

  function renderCohorts(d) {
    var sel = $("cohort-channel"), keep = sel.value, seen = {};
    (d.rows || []).forEach(function (r) { seen[r.channel] = true; });
    var channels = Object.keys(seen).sort(function (a, b) {
      return (a === UNATTRIBUTED) - (b === UNATTRIBUTED) || a.localeCompare(b);
    });
    sel.replaceChildren(option("", "All channels"));
    channels.forEach(function (c) { sel.append(option(c, c)); });
    sel.value = seen[keep] ? keep : "";
    drawCohorts();
  }

  function th(text, scope, cls) {
    var c = document.createElement("th");
    c.scope = scope;
    if (cls) c.className = cls;
    c.textContent = text;
    return c;
  }

  /** The heatmap for the chosen first-touch channel (or all): cohort x months since. */
  function drawCohorts() {
    var d = panelState("cohorts").data;
    if (!d) return;
    var pick = $("cohort-channel").value, cur = d.currency;
    var cohorts = {}, order = [], last = monthNumber(d.to), maxMonth = 0;
    (d.rows || []).forEach(function (r) {
      if (pick && r.channel !== pick) return;
      var c = cohorts[r.cohort];
      if (!c) { c = cohorts[r.cohort] = { sizes: {}, months: {}, revenue: "0" }; order.push(r.cohort); }
      c.sizes[r.channel] = r.customers;  // the cohort's size, repeated on each of its months
      var m = c.months[r.month] || (c.months[r.month] = { revenue: "0", buyers: 0 });
      m.revenue = addDec(m.revenue, r.revenue);
      m.buyers += r.buyers;
      c.revenue = addDec(c.revenue, r.revenue);
    });
    order.sort();
    order.forEach(function (k) { maxMonth = Math.max(maxMonth, last - monthNumber(k + "-01")); });
    var peak = 0;  // the darkest cell: the most revenue per customer
    order.forEach(function (k) {
      var c = cohorts[k];
      c.customers = Object.keys(c.sizes).reduce(function (s, ch) { return s + c.sizes[ch]; }, 0);
      Object.keys(c.months).forEach(function (m) {
        if (c.customers) peak = Math.max(peak, Number(c.months[m].revenue) / c.customers);
      });
    });

    var head = document.createElement("tr");
    head.append(th("Cohort", "col", "text"), th("Customers", "col"), th("Revenue", "col"), th("Per customer", "col"));
    for (var m = 0; m <= maxMonth; m++) head.append(th(m === 0 ? "Month 0" : "+" + m, "col", "month"));
    var body = document.createDocumentFragment(), sums = {}, customers = 0, revenue = "0";
    order.forEach(function (k) {
      var c = cohorts[k], tr = document.createElement("tr");
      var name = th(k, "row", "text");
      name.setAttribute("data-cohort", k);
      tr.append(name);
      tr.append(cohortCell(k, "customers", "count", c.customers, cur),
                cohortCell(k, "revenue", "money", c.revenue, cur),
                cohortCell(k, "per_customer", "money", c.customers ? divDec(c.revenue, c.customers) : null, cur));
      var horizon = last - monthNumber(k + "-01");
      for (var m = 0; m <= maxMonth; m++) {
        var cell = document.createElement("td");
        if (m > horizon) {  // that month has not come within the range
          cell.className = "na";
          tr.append(cell);
          continue;
        }
        var got = c.months[m] || { revenue: "0", buyers: 0 };
        sums[m] = addDec(sums[m] || "0", got.revenue);
        cell.className = "num heat" + (negative(got.revenue) ? " neg" : Number(got.revenue) === 0 ? " zero" : "");
        cell.setAttribute("data-cohort", k);
        cell.setAttribute("data-month", String(m));
        cell.setAttribute("data-field", "revenue");
        cell.setAttribute("data-raw", got.revenue);
        cell.setAttribute("data-buyers", String(got.buyers));
        cell.textContent = Number(got.revenue) === 0 ? "" : axisMoney(Number(got.revenue));
        cell.title = k + ", month " + m + ": " + fmtMoney(got.revenue, cur, 2) + " from " + got.buyers + " of " +
          c.customers + " customers" + (c.customers ? " (" + fmtMoney(divDec(got.revenue, c.customers), cur, 2) + " per customer)" : "");
        var share = c.customers && peak > 0 ? Math.max(0, Number(got.revenue) / c.customers / peak) : 0;
        if (share > 0) {
          cell.style.backgroundColor = "rgba(31, 138, 91, " + (0.1 + 0.85 * share).toFixed(3) + ")";
          if (share > 0.55) cell.classList.add("hot");
        }
        tr.append(cell);
      }
      customers += c.customers;
      revenue = addDec(revenue, c.revenue);
      body.append(tr);
    });
    var foot = document.createDocumentFragment();
    if (order.length) {
      var tr = document.createElement("tr");
      tr.className = "total";
      tr.append(th("All cohorts", "row", "text"),
                cohortCell("__total__", "customers", "count", customers, cur),
                cohortCell("__total__", "revenue", "money", revenue, cur),
                cohortCell("__total__", "per_customer", "money", customers ? divDec(revenue, customers) : null, cur));
      for (var n = 0; n <= maxMonth; n++) {
        var td = cohortCell("__total__", "revenue", "money", sums[n] || "0", cur);
        td.setAttribute("data-month", String(n));
        tr.append(td);
      }
      foot.append(tr);
    } else {
      var empty = document.createElement("tr"), cell = document.createElement("td");
      empty.className = "empty";
      cell.colSpan = 4;
      cell.textContent = pick ? "No first purchases from " + pick + " in this period." : "No first purchases in this period.";
      empty.append(cell);
      body.append(empty);
    }
    var table = $("cohorts");
    table.tHead.replaceChildren(head);
    table.tBodies[0].replaceChildren(body);
    table.tFoot.replaceChildren(foot);
    table.setAttribute("data-channel", pick);
  }

  function cohortCell(cohort, field, kind, raw, currency) {
    var c = document.createElement("td");
    c.setAttribute("data-cohort", cohort);
    c.setAttribute("data-field", field);
    c.setAttribute("data-raw", raw === null || raw === undefined ? "null" : String(raw));
    c.className = "num" + (isNull(raw) ? " null" : "");
    c.textContent = format(kind, raw, currency);
    c.title = exact(kind, raw, currency);
    return c;
  }

  var FUNNEL = [["visits", "count"], ["leads", "count"], ["deals", "count"], ["sales", "count"],
                ["visit_to_lead", "percent"], ["lead_to_deal", "percent"], ["deal_to_sale", "percent"]];
  var STEP_COLORS = ["#9aa9bf", "#1f6feb", "#8250df", "#1f8a5b"];

  function renderFunnel(d) {
    var model = $("model").value, counted = model === "first_touch" || model === "last_touch" ? model : "last_non_direct";
    $("funnel-sub").textContent = "Each lead, deal and sale counted once, by " + MODELS[counted].name.toLowerCase() +
      (counted !== model ? " (a count is not split)" : "");
    var rows = (d.rows || []).slice(), body = document.createDocumentFragment(), foot = document.createDocumentFragment();
    var row = function (key, label, r, tag) {
      var tr = document.createElement("tr");
      if (key === TOTAL) tr.className = "total";
      if (key === UNATTRIBUTED) tr.className = "unattributed";
      var name = th(label, "row", "text");
      name.setAttribute("data-channel", key);
      tr.append(name);
      FUNNEL.forEach(function (c) { tr.append(numberCell("td", key, c[0], c[1], r[c[0]], d.currency)); });
      return tr;
    };
    rows.forEach(function (r) { body.append(row(r.channel, r.channel, r)); });
    if (d.total && Object.keys(d.total).length) foot.append(row(TOTAL, "Total", d.total));
    var table = $("funnel");
    table.tBodies[0].replaceChildren(body);
    table.tFoot.replaceChildren(foot);

    if (typeof window.Chart !== "function") { setChartEmpty("chart-funnel", true, "The chart library did not load."); return; }
    var shown = rows.filter(function (r) { return r.visits || r.leads || r.deals || r.sales; });
    if (!state.charts.funnel) {
      var o = chartBase();
      o.scales = {
        x: { grid: { display: false }, ticks: { autoSkip: false, maxRotation: 30 } },
        y: { type: "logarithmic", grid: { color: COLORS.grid },
             ticks: { callback: function (v) { return /^1(0*)$/.test(String(v)) ? fmtDec(v, 0) : ""; } } }
      };
      o.plugins.tooltip = { callbacks: { label: function (c) { return c.dataset.label + ": " + fmtCount(c.raw); } } };
      state.charts.funnel = new window.Chart($("chart-funnel"), {
        type: "bar",
        data: { labels: [], datasets: ["Visits", "Leads", "Deals", "Sales"].map(function (label, i) {
          return { label: label, data: [], backgroundColor: STEP_COLORS[i], borderRadius: 2, maxBarThickness: 18 };
        }) },
        options: o
      });
    }
    var chart = state.charts.funnel;
    chart.data.labels = shown.map(function (r) { return r.channel; });
    ["visits", "leads", "deals", "sales"].forEach(function (f, i) {
      chart.data.datasets[i].data = shown.map(function (r) { return Number(r[f]) || null; });  // log scale: 0 is no bar
    });
    chart.update("none");
    setChartEmpty("chart-funnel", !shown.length, "No visits or conversions in this period.");
  }

  /* the paths and campaigns reports are drawn from whatever columns they return */

  var TEXT_FIELDS = /^(path|channel|source|medium|campaign|content|term|ad|keyword|section|level|model)$/;
  var MONEY_FIELDS = /(^|_)(revenue|spend|cost|value|cpl|cpo|cac|ltv)$|^average_check$/;
  var PERCENT_FIELDS = /^(share|conversion|roi|romi)$|_share$|_rate$|^(visit_to_lead|lead_to_deal|deal_to_sale|lead_to_sale)$/;

  function kindOf(field, values) {
    if (TEXT_FIELDS.test(field)) return "text";
    if (MONEY_FIELDS.test(field)) return "money";
    if (PERCENT_FIELDS.test(field)) return "percent";
    var numeric = values.every(function (v) { return isNull(v) || /^-?\d+(\.\d+)?$/.test(plain(v)); });
    if (!numeric) return "text";
    return values.every(function (v) { return isNull(v) || /^-?\d+$/.test(plain(v)); }) ? "count" : "number";
  }

  function label(field) { var s = String(field).replace(/_/g, " "); return s.charAt(0).toUpperCase() + s.slice(1); }

  function anyTable(container, rows, skip, emptyText, currency) {
    var fields = [];
    rows.forEach(function (r) { Object.keys(r).forEach(function (k) { if (fields.indexOf(k) < 0 && skip.indexOf(k) < 0) fields.push(k); }); });
    fields = fields.filter(function (f) { return rows.some(function (r) { return !isNull(r[f]); }); });  // no all-empty columns
    var kinds = {};
    fields.forEach(function (f) { kinds[f] = kindOf(f, rows.map(function (r) { return r[f]; })); });
    fields.sort(function (a, b) { return (kinds[b] === "text") - (kinds[a] === "text"); });  // names first, stable
    var table = document.createElement("table"), head = document.createElement("tr"), body = document.createElement("tbody");
    table.className = "compact";
    fields.forEach(function (f) { head.append(th(label(f), "col", kinds[f] === "text" ? "text" : "")); });
    rows.forEach(function (r, i) {
      var tr = document.createElement("tr");
      fields.forEach(function (f) {
        var raw = r[f], c = document.createElement("td"), kind = kinds[f];
        c.setAttribute("data-row", String(i));
        c.setAttribute("data-field", f);
        c.setAttribute("data-raw", raw === null || raw === undefined ? "null" : String(raw));
        if (kind === "text") {
          c.className = "text";
          c.textContent = isNull(raw) ? DASH : String(raw);
        } else {
          c.className = "num" + (isNull(raw) ? " null" : "") + (negative(raw) ? " neg" : "");
          c.textContent = kind === "number" ? (isNull(raw) ? DASH : fmtDec(raw, Number.isInteger(Number(raw)) ? 0 : 2))
            : format(kind, raw, currency);
          c.title = kind === "number" ? (isNull(raw) ? "no value" : plain(raw)) : exact(kind, raw, currency);
        }
        tr.append(c);
      });
      body.append(tr);
    });
    if (!rows.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      tr.className = "empty";
      td.colSpan = Math.max(fields.length, 1);
      td.textContent = emptyText;
      tr.append(td);
      body.append(tr);
    }
    var thead = document.createElement("thead");
    thead.append(head);
    table.append(thead, body);
    container.replaceChildren(table);
  }

  function renderPaths(d) {
    var rows = d.rows || [];
    if (rows.some(function (r) { return "section" in r; })) rows = rows.filter(function (r) { return r.section === "path"; });
    anyTable($("panel-paths").querySelector("[data-panel-body]"), rows.slice(0, TOP_PATHS), ["section"],
             "No converting paths in this period.", d.currency);
  }

  function renderCampaigns(d) {
    var channel = state.drill, rows = d.rows || [];
    if (rows.some(function (r) { return "channel" in r; })) rows = rows.filter(function (r) { return r.channel === channel; });
    anyTable($("panel-campaigns").querySelector("[data-panel-body]"), rows, ["channel"],
             "No campaigns of " + channel + " in this period.", d.currency);
    $("panel-campaigns").setAttribute("data-channel", channel);
  }

  var RENDER = { cohorts: renderCohorts, funnel: renderFunnel, paths: renderPaths, campaigns: renderCampaigns };

  function openDrill(channel) {
    state.drill = channel;
    $("drill-channel").textContent = channel;
    var el = $("panel-campaigns"), ps = panelState("campaigns");
    el.hidden = false;
    el.removeAttribute("data-state");
    if (ps.unknown) {
      el.setAttribute("data-state", "unknown");
    } else {
      if (ps.data) renderCampaigns(ps.data);
      var p = params(), token = getToken();
      if (p && token) loadPanel("campaigns", p, token);
    }
    el.scrollIntoView({ block: "nearest" });
  }

  function closeDrill() {
    state.drill = null;
    $("panel-campaigns").hidden = true;
  }

  /* ---------- start ---------- */

  function start() {
    takeTokenFromFragment();
    initControls();
    initSorting();
    $("token-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var t = $("token-input").value.trim();
      if (!t) return;
      setToken(t);
      $("token-input").value = "";
      showApp();
      load();
    });
    $("signout").addEventListener("click", function () {
      clearToken();
      state.data = state.text = null;
      askToken("");
    });
    window.addEventListener("hashchange", function () {
      if (takeTokenFromFragment()) { showApp(); load(); }
    });
    document.addEventListener("visibilitychange", function () {
      if (!getToken() || $("app").hidden) return;
      if (document.hidden) {
        setDot("off");
        if (state.updated) $("updated").textContent = state.updated + " \u00B7 paused while the tab is hidden";
        return;
      }
      if (Date.now() - state.loadedAt >= REFRESH_MS) load();
      else if (state.updated) { $("updated").textContent = state.updated; setDot("live"); }
    });
    $("cohort-channel").addEventListener("change", drawCohorts);
    $("drill-close").addEventListener("click", closeDrill);
    setInterval(tick, REFRESH_MS);
    if (getToken()) { showApp(); load(); } else { askToken(""); }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
