/*! moneytrail tracker v1: tag options, API and storage keys are in the README */
(function (w, d) {
  'use strict';
  var stub = w.moneytrail;
  if (stub && stub.v) return; // loaded twice
  var nav = navigator, loc = location, now = Date.now, iso = () => new Date().toISOString();
  var tag = d.currentScript || d.querySelector('script[data-write-key]'), cfg = (tag && tag.dataset) || {};
  var KEY = cfg.writeKey, HOST = cfg.host;
  try { HOST = HOST || new URL(tag.src).origin } catch (e) {}
  HOST = (HOST || '').replace(/\/+$/, '');
  var UTM = ['source', 'medium', 'campaign', 'term', 'content'];
  var CLICK = ['gclid', 'gbraid', 'wbraid', 'yclid', 'fbclid', 'ttclid', 'vkclid', 'msclkid'];
  var dnt = cfg.respectDnt == 'true' && nav.doNotTrack == '1';
  var consent, aid, uid, Q = [], timer, retryTimer, fails = 0, cur, ref = d.referrer, last;
  var live = () => !!KEY && consent !== false && !dnt; // may record (in memory while consent is pending)
  var ok = () => live() && consent === true; // may send and store
  var safe = f => function () { try { return f.apply(this, arguments) } catch (e) {} };
  var idle = f => (w.requestIdleCallback || setTimeout)(safe(f), {timeout: 2e3}); // setTimeout: 0 ms
  var clip = s => s && String(s).slice(0, 4e3);
  var rnd = n => crypto.getRandomValues(new Uint8Array(n));
  var uuid = () => { try { return crypto.randomUUID() } catch (e) {}
    return '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, c => (c ^ rnd(1)[0] & 15 >> c / 4).toString(16)) };

  // Storage; memory when blocked, and before consent
  var mem = {}, store = s => w[s ? 'sessionStorage' : 'localStorage'];
  function get(k, s) {
    var m = (s ? 's' : 'l') + k;
    if (!(m in mem) || ok()) try { var v = store(s).getItem(k); if (v != null) return v } catch (e) {}
    return m in mem ? mem[m] : null;
  }
  function set(k, v, s) {
    mem[(s ? 's' : 'l') + k] = v;
    if (ok()) try { v == null ? store(s).removeItem(k) : store(s).setItem(k, v) } catch (e) {}
  }
  function jget(k, s) { try { return JSON.parse(get(k, s)) } catch (e) {} }
  var jset = (k, v, s) => set(k, v && JSON.stringify(v), s);
  function cookie(v) { // read, write, or ('') delete
    try {
      if (v == null) return (d.cookie.match(/(?:^|;\s*)_mt_aid=([\w-]{8,64})(;|$)/) || [])[1];
      d.cookie = '_mt_aid=' + v + ';path=/;SameSite=Lax;max-age=' + (v ? 31536000 : 0) + (loc.protocol == 'https:' ? ';Secure' : '');
    } catch (e) {}
  }
  function refCode() { // Crockford base32, one a day
    var r = jget('_mt_ref') || {};
    if (!/^[0-9A-Z]{8}$/.test(r.c) || !(now() - r.t < 864e5))
      jset('_mt_ref', r = {c: Array.from(rnd(8), x => '0123456789ABCDEFGHJKMNPQRSTVWXYZ'[x & 31]).join(''), t: now()});
    return r.c;
  }

  // {source, medium, campaign, term, content, gclid, ...} of a query string
  function tags(search) {
    var t = {}, any;
    new URLSearchParams(search).forEach((v, k) => {
      k = k.toLowerCase(); v = v.trim();
      k = k.slice(0, 4) == 'utm_' && UTM.indexOf(k.slice(4)) >= 0 ? k.slice(4) : CLICK.indexOf(k) >= 0 && k;
      if (k && v && !(k in t)) t[k] = any = v.slice(0, 500);
    });
    return any && t;
  }

  // Messenger links carry the ref code: WhatsApp text, Telegram bot start payload
  function deco(href, code) {
    var u;
    try { u = new URL(href, loc.href) } catch (e) { return }
    var host = u.hostname.replace(/^www\./, ''), q = u.searchParams;
    if (/^(wa\.me|web\.whatsapp\.com)$/.test(host) || host == 'api.whatsapp.com' && /^\/send/.test(u.pathname) ||
        u.protocol == 'whatsapp:' && host == 'send') {
      var text = (q.get('text') || '').replace(/\s*\bMT[-_][0-9A-HJKMNP-TV-Z]{8}\b/gi, '');
      q.set('text', (text ? text + ' ' : '') + 'MT-' + code);
      u.search = q.toString().replace(/\+/g, '%20');
      return {p: 'whatsapp', h: u.href, c: code};
    }
    if (/^t(elegram)?\.me$/.test(host) && /^\/[a-z]\w{1,30}bot\/?$/i.test(u.pathname)) {
      if (/^(?!mt_)./i.test(q.get('start') || '')) return {p: 'telegram', h: href};
      q.set('start', 'mt_' + code);
      return {p: 'telegram', h: u.href, c: code};
    }
  }
  function decorate(a) {
    var h = a.getAttribute('href'), r = /wa\.me|whatsapp|t(elegram)?\.me\//i.test(h) && deco(h, refCode());
    if (r && r.h != h) a.setAttribute('href', r.h);
    return r;
  }

  // Segment-spec messages
  function msg(type, extra) {
    if (!live()) return;
    var t = tags(loc.search);
    Q.push(Object.assign({
      type: type, messageId: uuid(), anonymousId: aid, userId: uid || undefined, timestamp: iso(), context: {
        page: {url: clip(loc.href), path: clip(loc.pathname), referrer: clip(ref), title: clip(d.title), search: clip(loc.search)},
        campaign: t && UTM.some(k => t[k]) ? {source: t.source, medium: t.medium, name: t.campaign, term: t.term, content: t.content} : undefined,
        locale: nav.language, screen: {width: screen.width, height: screen.height}, library: {name: 'moneytrail.js', version: '1'}
      }
    }, extra));
    if (Q.length > 200) Q.shift();
    timer = timer || setTimeout(safe(flush), 1e3);
  }
  function flush(urgent) {
    clearTimeout(timer); timer = 0;
    while (ok() && Q.length) {
      var b = [], n = 0;
      while (Q.length && b.length < 25 && n < 3e4) { b.push(Q.shift()); n += JSON.stringify(b[b.length - 1]).length }
      send(b, urgent || d.visibilityState == 'hidden');
    }
  }
  // Leaving: sendBeacon. Visible: fetch; the batch waits in _mt_q until acknowledged (5xx/429: backoff)
  function send(b, urgent) {
    var at = iso(), url = HOST + '/collect', body;
    var retry = () => { retryTimer = retryTimer || setTimeout(safe(resend), 1e3 * Math.min(2 ** ++fails, 64)) };
    b.forEach(m => { m.sentAt = at });
    body = JSON.stringify({write_key: KEY, batch: b});
    if (urgent) try { if (nav.sendBeacon(url, new Blob([body], {type: 'text/plain'}))) return } catch (e) {}
    qsave(qload().concat(b));
    try {
      fetch(url, {method: 'POST', body: body, keepalive: body.length < 6e4, headers: {'Content-Type': 'text/plain'}}).then(r => {
        if (r.status >= 500 || r.status == 429) throw 0;
        fails = 0;
        var ids = b.map(m => m.messageId);
        qsave(qload().filter(m => ids.indexOf(m.messageId) < 0));
      }).catch(retry);
    } catch (e) { retry() }
  }
  // at most 50 messages, 64 KB, 7 days; the collector dedupes by messageId
  function qload() { var v = jget('_mt_q'); return Array.isArray(v) ? v : [] }
  function qsave(l) {
    var seen = {}, s;
    l = l.filter(m => m && !seen[m.messageId] && (seen[m.messageId] = 1) && now() - Date.parse(m.timestamp) < 6048e5);
    while ((s = JSON.stringify(l)).length > 65536 || l.length > 50) l.shift();
    set('_mt_q', l.length ? s : null);
  }
  function resend() {
    clearTimeout(retryTimer); retryTimer = 0;
    Q = qload().concat(Q);
    set('_mt_q', null);
    flush();
  }

  // Page views on load and SPA route changes (referrer: the previous URL)
  function page() {
    var href = loc.href, k = href.replace(/#(?!!?\/).*$/, ''), t; // #/route counts, #section not
    if (k == last) return;
    if (cur) ref = cur;
    cur = href; last = k;
    if (t = live() && tags(loc.search)) { // first touch kept
      t.ts = iso();
      if (!jget('_mt_ft')) jset('_mt_ft', t);
      jset('_mt_lt', t);
    }
    msg('page');
    idle(scan);
  }

  // Forms: hidden inputs for the CRM; only phone and email are sent
  function field(els, kind, re) {
    var val = el => String(el.value || '').trim().slice(0, 128), el = els.find(el => el.getAttribute('data-mt') == kind && val(el)) ||
      els.find(el => el.type == (kind == 'phone' ? 'tel' : kind) && val(el)) ||
      els.find(el => /^(text|tel|email)$/.test(el.type) && re.test(el.name + ' ' + el.id) && val(el));
    return el && val(el);
  }
  function onSubmit(e) {
    var f = e.target, lt = jget('_mt_lt') || {}, els = Array.from(f.elements || []).filter(el => el.getAttribute);
    if (cfg.forms == 'off' || !live() || f.closest('[data-mt-ignore]')) return;
    if (ok()) ['anonymous_id'].concat(UTM).forEach(k => {
      var name = k == 'anonymous_id' ? 'mt_' + k : 'mt_utm_' + k, i = f.querySelector('input[name="' + name + '"]');
      if (!i) { i = f.appendChild(d.createElement('input')); i.type = 'hidden'; i.name = name }
      i.value = (k == 'anonymous_id' ? aid : lt[k]) || '';
    });
    msg('track', {event: 'Form Submitted', properties: {
      form_id: f.getAttribute('id') || f.getAttribute('name') || new URL(f.getAttribute('action') || '', loc.href).pathname,
      phone: field(els, 'phone', /phone|телефон|mobile|(^|[^a-z])tel([^a-z]|$)/i),
      email: field(els, 'email', /e-?mail|почта/i)
    }});
    flush(1);
  }
  function onClick(e) {
    var a = e.target.closest && e.target.closest('a[href]'), r;
    if (!a || !ok() || e.button == 2 || !(r = decorate(a))) return;
    msg('track', {event: 'Messenger Link Clicked', properties: {platform: r.p, ref_code: r.c}});
    flush(1);
  }

  // Call tracking: [data-mt-phone] shows a leased number
  var lease, asked, leaseTimer, later, orig = new Map(), PHONE = /\+?\d[\d\s().\u00a0-]{5,}\d/;
  var phones = () => cfg.calltracking == 'off' ? [] : Array.from(d.querySelectorAll('[data-mt-phone]'));
  var valid = l => l && l.lease_id && Date.parse(l.expires_at) > now();
  function put(el, s, num) { // s == null: the page's own
    var o = orig.get(el), tw = d.createTreeWalker(el, 4), n;
    if (!o) {
      while ((n = tw.nextNode()) && !PHONE.test(n.nodeValue));
      orig.set(el, o = {h: el.getAttribute('href'), n: n, v: n ? n.nodeValue : el.textContent});
    }
    if (o.n) o.n.nodeValue = s == null ? o.v : o.v.replace(PHONE, () => s);
    else if (!/[a-zа-яё]/i.test(o.v) && !el.firstElementChild) el.textContent = s == null ? o.v : s; // empty or a placeholder
    if (el.tagName == 'A' && (num || o.h)) el.setAttribute('href', num ? 'tel:' + num : o.h);
  }
  function show(el) { // data-mt-format: '#' take the last digits
    var fmt = el.getAttribute('data-mt-format'), digits = lease.number.replace(/\D/g, ''), i = fmt && digits.length - fmt.split('#').length + 1;
    put(el, fmt ? fmt.replace(/#/g, () => digits[i++] || '') : lease.display || lease.number, lease.number);
  }
  function fallback(el) {
    var def = el.getAttribute('data-mt-default');
    if (def || orig.has(el)) put(el, def, def && def.replace(/[^\d+]/g, ''));
  }
  function planLease(ms) {
    clearTimeout(leaseTimer);
    leaseTimer = setTimeout(safe(() => d.hidden ? later = 1 : askLease()), Math.max(ms, 1e3));
  }
  function calls() {
    var els = phones(), l = jget('_mt_lease', 1);
    if (!els.length || !ok()) return;
    if (!lease && valid(l)) planLease((lease = l).at + (l.extend_after_s || 300) * 1e3 - now());
    if (lease) els.forEach(show);
    else if (!asked) askLease();
  }
  async function askLease() { // again: extends
    asked = 1;
    var ctl = w.AbortController && new AbortController(), t = setTimeout(() => ctl && ctl.abort(), 2e3), l, wait = 6e4;
    try {
      var r = await fetch(HOST + '/api/calltracking/lease', {method: 'POST', headers: {'Content-Type': 'text/plain'},
        body: JSON.stringify({write_key: KEY, anonymous_id: aid}), signal: ctl && ctl.signal});
      l = r.ok && await r.json();
      wait = (l && l.extend_after_s || 300) * 1e3;
    } catch (e) {}
    try {
      clearTimeout(t);
      if (!ok()) return;
      if (valid(l)) jset('_mt_lease', lease = Object.assign(l, {at: now()}), 1);
      else if (!valid(lease)) lease = 0;
      phones().forEach(lease ? show : fallback);
      if (lease || l) planLease(wait); // pool exhausted: retry
    } catch (e) {}
  }

  function scan() {
    if (!ok()) return;
    d.querySelectorAll('a[href]').forEach(decorate);
    calls();
  }

  function setConsent(v) {
    var was = consent;
    consent = !!v;
    try { localStorage.setItem('_mt_consent', consent ? '1' : '0') } catch (e) {}
    if (!consent) { // forget the queue and stored ids
      Q = []; clearTimeout(leaseTimer); clearTimeout(retryTimer); retryTimer = 0; cookie('');
      ['_mt_aid', '_mt_ft', '_mt_lt', '_mt_q', '_mt_ref', '_mt_uid', '_mt_lease'].forEach(k => {
        try { localStorage.removeItem(k); sessionStorage.removeItem(k) } catch (e) {}
      });
    } else if (was !== true && ok()) { // memory to storage
      for (var m in mem) try { var st = store(m[0] == 's'); mem[m] == null ? st.removeItem(m.slice(1)) : st.setItem(m.slice(1), mem[m]) } catch (e) {}
      if (aid) {
        cookie(aid);
        if (!Q.some(m => m.type == 'page')) { last = cur = 0; page() }
      }
      flush(); idle(scan);
    }
  }

  var cmds = {
    track: (event, props) => { if (event) msg('track', {event: String(event), properties: props || {}}) },
    identify: (id, traits) => { // or (traits)
      if (id && typeof id == 'object') { traits = id; id = null }
      if (id != null && id !== '') set('_mt_uid', uid = String(id));
      msg('identify', {traits: traits || {}});
    },
    page: page,
    consent: setConsent,
    flush: () => flush(),
    anonymousId: () => aid,
    ref: () => ok() ? refCode() : undefined
  };
  function api(c) {
    try { if (cmds.hasOwnProperty(c)) return cmds[c].apply(null, [].slice.call(arguments, 1)) } catch (e) {}
  }
  api.v = 1;
  api._ = {deco: deco, tags: tags}; // for unit tests

  try {
    var c, queued = Array.from((stub && stub.q) || []), on = (t, e, f) => t.addEventListener(e, safe(f), true);
    try { c = localStorage.getItem('_mt_consent') } catch (e) {}
    consent = c ? c == '1' : cfg.consent == 'pending' ? null : true;
    queued.forEach(a => { if (a[0] == 'consent') setConsent(a[1]) });
    aid = cookie() || get('_mt_aid') || '';
    if (!/^[\w-]{8,64}$/.test(aid)) aid = uuid();
    set('_mt_aid', aid);
    if (ok()) cookie(aid);
    uid = get('_mt_uid');
    w.moneytrail = api;
    if (live()) resend();
    page();
    queued.forEach(a => { if (a[0] != 'consent') api.apply(null, a) });
    ['pushState', 'replaceState'].forEach(n => {
      var o = history[n];
      if (o) history[n] = function () { var r = o.apply(this, arguments); safe(page)(); return r };
    });
    on(w, 'popstate', page);
    on(d, 'submit', onSubmit);
    on(d, 'click', onClick);
    on(d, 'auxclick', onClick);
    on(d, 'visibilitychange', () => {
      if (d.visibilityState == 'hidden') flush(1);
      else if (later) { later = 0; askLease() }
    });
    on(w, 'pagehide', () => flush(1));
    on(w, 'online', resend);
    var busy, ready = safe(() => {
      calls();
      idle(scan);
      if (w.MutationObserver) new MutationObserver(() => { busy = busy || setTimeout(() => { busy = 0; idle(scan) }, 500) })
        .observe(d.documentElement, {childList: true, subtree: true});
    });
    d.readyState == 'loading' ? d.addEventListener('DOMContentLoaded', ready) : ready();
  } catch (e) {}
})(window, document);
