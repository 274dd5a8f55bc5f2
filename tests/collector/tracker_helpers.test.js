// Unit tests of collector/static/tracker.js, run by tests/collector/test_tracker_static.py with
// `node --test`. The script runs in a vm context with a small fake window/document written here
// (no dependencies): fake timers, a cookie jar, storages shared between "page loads", and recorders
// for sendBeacon and fetch. Required as a module (not run), it exports the fake browser instead.
'use strict';
const test = require.main === module ? require('node:test') : () => {};
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { webcrypto } = require('node:crypto');

const SOURCE = fs.readFileSync(process.env.MT_TRACKER || path.join(__dirname, '..', '..', 'collector', 'static', 'tracker.js'), 'utf8');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const CROCKFORD = /^[0-9A-HJKMNP-TV-Z]{8}$/;

// ---- a minimal DOM -------------------------------------------------------------------------
class Text {
  constructor(v) { this.nodeType = 3; this.nodeValue = v; this.parentNode = null; }
  get textContent() { return this.nodeValue; }
}

function matches(el, selector) {
  return selector.split(',').some(part => {
    const m = part.trim().match(/^([a-z]*)((?:\[[^\]]+\])*)$/i);
    if (!m) throw new Error('fake DOM cannot match ' + part);
    if (m[1] && el.tagName !== m[1].toUpperCase()) return false;
    for (const [, name, op, value] of m[2].matchAll(/\[([\w-]+)(?:([*^]?=)"?([^"\]]*)"?)?\]/g)) {
      const v = el.getAttribute(name);
      if (v === null) return false;
      if (op === '=' && v !== value) return false;
      if (op === '*=' && !v.includes(value)) return false;
      if (op === '^=' && !v.startsWith(value)) return false;
    }
    return true;
  });
}

class El {
  constructor(tag, attrs = {}, children = []) {
    this.nodeType = 1;
    this.tagName = tag.toUpperCase();
    this.attrs = { ...attrs };
    this.childNodes = [];
    this.parentNode = null;
    this.listeners = {};
    for (const c of children) this.appendChild(typeof c === 'string' ? new Text(c) : c);
  }
  getAttribute(n) { return Object.prototype.hasOwnProperty.call(this.attrs, n) ? this.attrs[n] : null; }
  setAttribute(n, v) { this.attrs[n] = String(v); }
  hasAttribute(n) { return this.getAttribute(n) !== null; }
  appendChild(c) { c.parentNode = this; this.childNodes.push(c); return c; }
  get textContent() { return this.childNodes.map(c => c.textContent).join(''); }
  get firstElementChild() { return this.childNodes.find(c => c instanceof El) || null; }
  set textContent(v) { this.childNodes = []; if (v) this.appendChild(new Text(String(v))); }
  get type() { return (this.attrs.type || (this.tagName === 'INPUT' ? 'text' : this.tagName.toLowerCase())).toLowerCase(); }
  set type(v) { this.attrs.type = v; }
  get name() { return this.attrs.name || ''; }
  set name(v) { this.attrs.name = v; }
  get id() { return this.attrs.id || ''; }
  get value() { return this._value !== undefined ? this._value : (this.attrs.value || ''); }
  set value(v) { this._value = String(v); }
  get src() { return this.attrs.src || ''; }
  get dataset() {
    const out = {};
    for (const [k, v] of Object.entries(this.attrs)) {
      if (k.startsWith('data-')) out[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
    }
    return out;
  }
  descendants() {
    const out = [];
    const walk = n => { for (const c of n.childNodes) if (c instanceof El) { out.push(c); walk(c); } };
    walk(this);
    return out;
  }
  get elements() { return this.descendants().filter(e => ['INPUT', 'TEXTAREA', 'SELECT', 'BUTTON'].includes(e.tagName)); }
  querySelectorAll(sel) { return this.descendants().filter(e => matches(e, sel)); }
  querySelector(sel) { return this.querySelectorAll(sel)[0] || null; }
  closest(sel) { for (let n = this; n instanceof El; n = n.parentNode) if (matches(n, sel)) return n; return null; }
  addEventListener(type, f) { (this.listeners[type] = this.listeners[type] || []).push(f); }
}
const h = (tag, attrs, ...children) => new El(tag, attrs || {}, children);

class Storage {
  constructor() { this.map = new Map(); this.writes = 0; }
  getItem(k) { return this.map.has(k) ? this.map.get(k) : null; }
  setItem(k, v) { this.writes++; this.map.set(k, String(v)); }
  removeItem(k) { this.map.delete(k); }
  json(k) { return JSON.parse(this.getItem(k)); }
}

// A browser profile: what survives page loads (cookies, localStorage; sessionStorage per tab).
function profile() {
  return { jar: new Map(), local: new Storage(), session: new Storage() };
}

// One page load. opts: url, referrer, attrs (on the script tag), body (El children), beacon
// (true/false), fetch(url, init) -> response-like, blockStorage, dnt, stub (a pre-load queue).
function load(prof, opts = {}) {
  const timers = [];
  let clock = 0;
  const sent = { beacons: [], fetches: [] };
  const url = new URL(opts.url || 'https://shop.kz/');
  const loc = {};
  const go = u => {
    const x = new URL(u, loc.href || url.href);
    Object.assign(loc, { href: x.href, pathname: x.pathname, search: x.search, hash: x.hash, protocol: x.protocol, host: x.host });
  };
  go(url.href);
  const script = h('script', { src: 'https://collector.example/tracker.js', 'data-write-key': 'wk_test', ...(opts.attrs || {}) });
  const body = h('body', {}, ...(opts.body || []));
  const html = h('html', {}, h('head', {}, script), body);
  const docListeners = {};
  const winListeners = {};
  const document = {
    currentScript: script, referrer: opts.referrer || '', title: 'Shop', readyState: 'complete',
    visibilityState: 'visible', hidden: false, documentElement: html, body,
    querySelector: s => html.querySelector(s), querySelectorAll: s => html.querySelectorAll(s),
    createElement: t => new El(t),
    createTreeWalker(root) {
      const texts = [];
      const walk = n => { for (const c of n.childNodes) { if (c instanceof Text) texts.push(c); else walk(c); } };
      walk(root);
      let i = 0;
      return { nextNode: () => texts[i++] || null };
    },
    addEventListener: (t, f) => { (docListeners[t] = docListeners[t] || []).push(f); },
    get cookie() {
      if (opts.blockStorage) throw new Error('SecurityError: cookies are blocked');
      return [...prof.jar].map(([k, v]) => k + '=' + v).join('; ');
    },
    set cookie(v) {
      if (opts.blockStorage) throw new Error('SecurityError: cookies are blocked');
      const [pair, ...attrs] = v.split(';');
      const [k, val] = pair.split('=');
      if (attrs.some(a => /^\s*max-age=0$/i.test(a))) prof.jar.delete(k); else prof.jar.set(k, val);
      prof.lastCookie = v;
    },
  };
  const navigator = {
    language: 'ru-RU',
    doNotTrack: opts.dnt ? '1' : null,
    sendBeacon(u, blob) {
      if (opts.beacon === false) return false;
      sent.beacons.push({ url: u, type: blob.type, body: JSON.parse(blob.parts.join('')) });
      return true;
    },
  };
  const history = {
    pushState: (s, t, u) => go(u),
    replaceState: (s, t, u) => go(u),
  };
  const win = {
    navigator, location: loc, document, history, console,
    URL, URLSearchParams, AbortController,
    crypto: opts.crypto || webcrypto,
    screen: { width: 1280, height: 800 },
    Blob: class { constructor(parts, o) { this.parts = parts; this.type = o.type; } },
    setTimeout(f, ms) { timers.push({ f, at: clock + (Number(ms) || 0), id: timers.length + 1 }); return timers.length; },
    clearTimeout(id) { const t = timers.find(x => x.id === id); if (t) t.cancelled = true; },
    addEventListener: (t, f) => { (winListeners[t] = winListeners[t] || []).push(f); },
    fetch: async (u, init) => {
      const record = { url: u, init, body: JSON.parse(init.body) };
      sent.fetches.push(record);
      const r = opts.fetch ? await opts.fetch(u, init, record) : { status: 200 };
      return { ok: r.status >= 200 && r.status < 300, status: r.status, json: async () => r.json };
    },
  };
  if (opts.blockStorage) {
    for (const name of ['localStorage', 'sessionStorage']) {
      Object.defineProperty(win, name, { get() { throw new Error('SecurityError: storage is blocked'); } });
    }
  } else {
    win.localStorage = prof.local;
    win.sessionStorage = prof.session;
  }
  if (opts.stub) win.moneytrail = Object.assign(function () {}, { q: opts.stub });
  win.window = win;
  const globals = Object.keys(win);
  vm.createContext(win);
  vm.runInContext(SOURCE, win, { filename: 'tracker.js' });

  const page = {
    win, doc: document, loc, sent, html, body, prof, globals,
    api: (...a) => win.moneytrail(...a),
    tick(ms = 0) { // run the timers due within ms of fake time
      clock += ms;
      for (let guard = 0; guard < 1000; guard++) {
        const due = timers.filter(t => !t.cancelled && !t.done && t.at <= clock).sort((a, b) => a.at - b.at)[0];
        if (!due) return;
        due.done = true;
        due.f();
      }
    },
    async settle(ms = 0) { // timers, then the promises they started, a few rounds
      for (let i = 0; i < 5; i++) { page.tick(i ? 0 : ms); await new Promise(r => setImmediate(r)); }
    },
    fire(target, type, event = {}) {
      const ev = { type, target, button: 0, ...event };
      for (const f of (target === win ? winListeners : docListeners)[type] || []) f(ev);
    },
    // every message delivered so far (beacons and fetches to /collect)
    messages() {
      return [...sent.beacons, ...sent.fetches].filter(s => s.url.endsWith('/collect')).flatMap(s => s.body.batch);
    },
    pushState(u) { win.history.pushState({}, '', u); },
  };
  return page;
}

module.exports = { load, profile, h };

// ---- tests ----------------------------------------------------------------------------------
test('arrival with tags: a page view with the campaign, the cookie and first/last touch', async () => {
  const prof = profile();
  const p = load(prof, { url: 'https://shop.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid=abc', referrer: 'https://www.google.com/' });
  assert.equal(p.messages().length, 0, 'batched: nothing before the flush timer');
  await p.settle(1000);
  const [f] = p.sent.fetches;
  assert.equal(f.url, 'https://collector.example/collect');
  assert.equal(f.init.headers['Content-Type'], 'text/plain');
  assert.equal(f.body.write_key, 'wk_test');
  const [m] = f.body.batch;
  assert.equal(m.type, 'page');
  assert.match(m.messageId, UUID);
  assert.match(m.anonymousId, UUID);
  assert.ok(!Number.isNaN(Date.parse(m.timestamp)) && !Number.isNaN(Date.parse(m.sentAt)));
  assert.deepEqual({ ...m.context.campaign }, { source: 'google', medium: 'cpc', name: 'sofas' });
  assert.equal(m.context.page.url, 'https://shop.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid=abc');
  assert.equal(m.context.page.path, '/sofas');
  assert.equal(m.context.page.referrer, 'https://www.google.com/');
  assert.equal(m.context.page.title, 'Shop');
  assert.equal(m.context.locale, 'ru-RU');
  assert.equal(prof.jar.get('_mt_aid'), m.anonymousId);
  assert.match(prof.lastCookie, /path=\/;SameSite=Lax;max-age=31536000;Secure$/);
  assert.equal(prof.local.getItem('_mt_aid'), m.anonymousId);
  const ft = prof.local.json('_mt_ft');
  assert.equal(ft.source, 'google');
  assert.equal(ft.gclid, 'abc');
  assert.ok(ft.ts);
  assert.deepEqual(prof.local.json('_mt_lt'), ft);
  assert.equal(prof.local.getItem('_mt_q'), null, 'acknowledged batches leave the retry queue');
});

test('SPA route changes: one page view per new URL, the previous URL as referrer', async () => {
  const p = load(profile(), { url: 'https://shop.kz/?utm_source=google&utm_medium=cpc', referrer: 'https://google.com/' });
  p.pushState('/catalog/sofas');
  p.pushState('/catalog/sofas'); // the same URL twice in a row
  p.win.history.replaceState({}, '', '/catalog/sofas');
  p.pushState('/catalog/sofas#reviews'); // an anchor on the same page
  p.pushState('/catalog/chairs');
  p.pushState('/catalog/sofas'); // back to an earlier URL: a new page view
  await p.settle(1000);
  const pages = p.messages().filter(m => m.type === 'page');
  assert.deepEqual(pages.map(m => m.context.page.path), ['/', '/catalog/sofas', '/catalog/chairs', '/catalog/sofas']);
  assert.equal(pages[1].context.page.referrer, 'https://shop.kz/?utm_source=google&utm_medium=cpc');
  assert.equal(pages[2].context.page.referrer, 'https://shop.kz/catalog/sofas', 'the previous page view\'s URL');
  assert.equal(pages[1].context.campaign, undefined, 'no tags in the URL, no campaign');
  p.loc.href = 'https://shop.kz/catalog/doors'; // popstate (back button)
  p.loc.pathname = '/catalog/doors';
  p.fire(p.win, 'popstate');
  p.fire(p.win, 'popstate');
  await p.settle(1000);
  assert.deepEqual(p.messages().filter(m => m.type === 'page').map(m => m.context.page.path).slice(4), ['/catalog/doors']);
});

test('a later visit without tags keeps the last touch; a new campaign replaces it; the cookie comes back', async () => {
  const prof = profile();
  const first = load(prof, { url: 'https://shop.kz/?utm_source=google&utm_medium=cpc&utm_campaign=sofas' });
  await first.settle(1000);
  const aid = first.messages()[0].anonymousId;
  const lt = prof.local.getItem('_mt_lt');

  const later = load(prof, { url: 'https://shop.kz/about' });
  await later.settle(1000);
  assert.equal(prof.local.getItem('_mt_lt'), lt);
  assert.equal(later.messages()[0].anonymousId, aid);
  assert.equal(later.messages()[0].context.campaign, undefined);

  load(prof, { url: 'https://shop.kz/?yclid=123' }); // a click id alone is a new campaign
  assert.equal(prof.local.json('_mt_lt').yclid, '123');
  assert.equal(prof.local.json('_mt_lt').source, undefined);

  load(prof, { url: 'https://shop.kz/?UTM_SOURCE=Yandex&utm_medium=cpc' });
  assert.equal(prof.local.json('_mt_lt').source, 'Yandex');
  assert.equal(prof.local.json('_mt_ft').source, 'google', 'the first touch stays');

  prof.jar.clear(); // the visitor cleared cookies
  const back = load(prof, { url: 'https://shop.kz/' });
  await back.settle(1000);
  assert.equal(back.messages()[0].anonymousId, aid);
  assert.equal(prof.jar.get('_mt_aid'), aid);
});

test('campaign tags and messenger link decoration (pure helpers)', () => {
  const { tags, deco } = load(profile()).win.moneytrail._;
  assert.deepEqual({ ...tags('?utm_source=google&utm_medium=&gclid=x&foo=1&utm_source=bing') }, { source: 'google', gclid: 'x' });
  assert.equal(tags('?foo=1'), undefined);

  const code = 'ABCDEFGH';
  const wa = deco('https://wa.me/77011234567?text=%D0%97%D0%B4%D1%80%D0%B0%D0%B2%D1%81%D1%82%D0%B2%D1%83%D0%B9%D1%82%D0%B5', code);
  assert.equal(wa.p, 'whatsapp');
  assert.equal(wa.c, code);
  assert.equal(new URL(wa.h).searchParams.get('text'), 'Здравствуйте MT-ABCDEFGH');
  assert.ok(wa.h.startsWith('https://wa.me/77011234567?text=') && wa.h.includes('%20MT-ABCDEFGH') && !wa.h.includes('+'));
  assert.equal(new URL(deco('https://wa.me/77011234567', code).h).searchParams.get('text'), 'MT-ABCDEFGH');
  const again = deco(deco('https://wa.me/7701?text=Hi', 'ZZZZZZZZ').h, code).h; // a rotated code replaces the old one
  assert.equal(new URL(again).searchParams.get('text'), 'Hi MT-ABCDEFGH');
  for (const link of ['https://api.whatsapp.com/send?phone=77011234567', 'https://web.whatsapp.com/send?phone=7701',
    'whatsapp://send?phone=77011234567&text=Hi', 'https://www.wa.me/7701']) {
    const r = deco(link, code);
    assert.equal(r && r.p, 'whatsapp', link);
    assert.match(new URL(r.h).searchParams.get('text'), / ?MT-ABCDEFGH$/, link);
  }
  assert.equal(new URL(deco('whatsapp://send?phone=77011234567&text=Hi', code).h).searchParams.get('phone'), '77011234567');

  assert.equal(deco('https://t.me/mebel_shop_bot', code).h, 'https://t.me/mebel_shop_bot?start=mt_ABCDEFGH');
  assert.equal(deco('https://telegram.me/MebelBot?start=mt_ZZZZZZZZ', code).h, 'https://telegram.me/MebelBot?start=mt_ABCDEFGH');
  const own = deco('https://t.me/mebel_shop_bot?start=promo5', code);
  assert.deepEqual({ ...own }, { p: 'telegram', h: 'https://t.me/mebel_shop_bot?start=promo5' }, 'the site\'s own payload stays');
  for (const other of ['https://t.me/mebel_channel', 'https://api.whatsapp.com/catalog', 'https://example.com/?text=1', 'tel:+77270000000', 'http://[bad']) {
    assert.equal(deco(other, code), undefined, other);
  }
});

test('a WhatsApp link click carries the ref code in the href and in the event', async () => {
  const prof = profile();
  const span = h('span', {}, 'Write to us');
  const a = h('a', { href: 'https://wa.me/77011234567?text=Hello' }, span);
  const tg = h('a', { href: 'https://t.me/mebel_shop_bot' }, 'Telegram');
  const p = load(prof, { body: [a, tg] });
  await p.settle(0); // idle decoration
  const decorated = a.getAttribute('href');
  const code = decorated.match(/MT-([0-9A-Z]{8})$/)[1];
  assert.match(code, CROCKFORD);
  assert.equal(tg.getAttribute('href'), 'https://t.me/mebel_shop_bot?start=mt_' + code);
  p.fire(p.doc, 'click', { target: span });
  const beacon = p.sent.beacons.at(-1);
  assert.equal(beacon.url, 'https://collector.example/collect');
  assert.equal(beacon.type, 'text/plain');
  const click = beacon.body.batch.find(m => m.event === 'Messenger Link Clicked');
  assert.deepEqual(click.properties, { platform: 'whatsapp', ref_code: code });
  assert.equal(a.getAttribute('href'), decorated, 'decorating twice changes nothing');
  a.setAttribute('href', 'https://wa.me/77011234567'); // the page rewrote the link after decoration
  p.fire(p.doc, 'click', { target: a });
  assert.ok(a.getAttribute('href').endsWith('?text=MT-' + code), 'decorated at click time');
  p.fire(p.doc, 'click', { target: tg });
  assert.deepEqual(p.sent.beacons.at(-1).body.batch.at(-1).properties, { platform: 'telegram', ref_code: code });
  const before = p.messages().length;
  p.fire(p.doc, 'click', { target: h('a', { href: 'https://example.com/' }) });
  p.fire(p.doc, 'click', { target: a, button: 2 });
  await p.settle(1000);
  assert.equal(p.messages().length, before, 'other links and right clicks send nothing');
  assert.equal(load(prof, { body: [] }).api('ref'), code, 'the same code for the rest of the day');
});

test('form submit: hidden inputs for the CRM, and only the phone and email leave the page', async () => {
  const prof = profile();
  load(prof, { url: 'https://shop.kz/?utm_source=instagram&utm_medium=paid&utm_campaign=spring&utm_content=video' });
  const form = h('form', { id: 'callback', action: '/thanks' },
    h('input', { name: 'name', value: 'Aigerim' }),
    h('input', { type: 'tel', name: 'contact', value: '+7 701 123 45 67' }),
    h('input', { name: 'E-mail', value: 'aigerim@mail.kz' }),
    h('textarea', { name: 'message', value: 'Позвоните после 18:00, тел 87011234567' }),
    h('input', { type: 'hidden', name: 'mt_utm_source', value: 'stale' }));
  const ignored = h('form', { 'data-mt-ignore': '' }, h('input', { type: 'tel', name: 'phone', value: '+77010000000' }));
  const byName = h('form', { action: '/order/submit?x=1' }, h('input', { name: 'user[телефон]', value: '8 701 555 44 33' }),
    h('input', { name: 'hotel', value: 'Rixos' }), h('input', { type: 'password', name: 'phone_pin', value: '1234' }));
  const p = load(prof, { url: 'https://shop.kz/contacts', body: [form, ignored, byName] });
  p.fire(p.doc, 'submit', { target: form });
  const value = n => form.querySelector('input[name="' + n + '"]').value;
  assert.equal(value('mt_anonymous_id'), prof.jar.get('_mt_aid'));
  assert.equal(value('mt_utm_source'), 'instagram', 'an existing input is filled, not duplicated');
  assert.equal(form.querySelectorAll('input[name="mt_utm_source"]').length, 1);
  assert.equal(value('mt_utm_medium'), 'paid');
  assert.equal(value('mt_utm_campaign'), 'spring');
  assert.equal(value('mt_utm_content'), 'video');
  assert.equal(value('mt_utm_term'), '');
  assert.equal(form.querySelector('input[name="mt_utm_term"]').type, 'hidden');
  const sent = p.sent.beacons.at(-1).body.batch.find(m => m.event === 'Form Submitted');
  assert.deepEqual(sent.properties, { form_id: 'callback', phone: '+7 701 123 45 67', email: 'aigerim@mail.kz' });

  p.fire(p.doc, 'submit', { target: ignored });
  assert.equal(ignored.querySelector('input[name="mt_anonymous_id"]'), null);
  p.fire(p.doc, 'submit', { target: byName });
  await p.settle(1000);
  const forms = p.messages().filter(m => m.event === 'Form Submitted');
  assert.equal(forms.length, 2, 'the data-mt-ignore form sent nothing');
  assert.deepEqual(forms[1].properties, { form_id: '/order/submit', phone: '8 701 555 44 33' });
  const everything = JSON.stringify(p.messages());
  for (const secret of ['Aigerim', 'Позвоните', 'Rixos', '1234', '+77010000000']) assert.ok(!everything.includes(secret), secret);
});

test('transport: refused beacons and failed requests wait in _mt_q and are sent again with the same messageId', async () => {
  const prof = profile();
  let fail = true;
  const p = load(prof, { beacon: false, fetch: async () => { if (fail) throw new TypeError('network'); return { status: 200 }; } });
  p.api('track', 'Viewed Sofa', { sku: 'S1' });
  await p.settle(1000);
  let stored = prof.local.json('_mt_q');
  assert.deepEqual(stored.map(m => m.type), ['page', 'track']);
  const ids = stored.map(m => m.messageId);
  p.fire(p.win, 'pagehide'); // beacon refused: fetch keepalive, which fails too
  assert.equal(p.sent.fetches.at(-1).init.keepalive, true);
  fail = false;
  await p.settle(2500); // the backoff
  assert.deepEqual(p.sent.fetches.at(-1).body.batch.map(m => m.messageId), ids);
  assert.equal(prof.local.getItem('_mt_q'), null);

  // a 503 keeps the batch for the next page load; a 400 drops it
  let status = 503;
  const q = load(prof, { fetch: async () => ({ status }) });
  await q.settle(1000);
  stored = prof.local.json('_mt_q');
  assert.equal(stored.length, 1);
  status = 200;
  const next = load(prof, {});
  await next.settle(0);
  assert.equal(next.sent.fetches[0].body.batch[0].messageId, stored[0].messageId, 'sent again on the next load');
  assert.equal(prof.local.getItem('_mt_q'), null);
  status = 400;
  const bad = load(prof, { fetch: async () => ({ status }) });
  await bad.settle(1000);
  assert.equal(prof.local.getItem('_mt_q'), null, 'a refused message is not retried');

  // capped: the oldest are dropped
  const down = load(prof, { beacon: false, fetch: async () => ({ status: 503 }) });
  for (let i = 0; i < 80; i++) down.api('track', 'Event ' + i);
  await down.settle(1000);
  stored = prof.local.json('_mt_q');
  assert.equal(stored.length, 50);
  assert.equal(stored.at(-1).event, 'Event 79');
  assert.ok(prof.local.getItem('_mt_q').length <= 65536);
});

test('a page becoming hidden sends what is queued with sendBeacon', () => {
  const p = load(profile());
  p.api('track', 'Read Article');
  assert.equal(p.messages().length, 0);
  p.doc.visibilityState = 'hidden';
  p.fire(p.doc, 'visibilitychange');
  assert.deepEqual(p.sent.beacons.flatMap(b => b.body.batch).map(m => m.event || m.type), ['page', 'Read Article']);
  assert.equal(p.sent.fetches.length, 0);
});

test('consent: pending sends and stores nothing until given; refused clears the queue and the ids', async () => {
  const prof = profile();
  const p = load(prof, { url: 'https://shop.kz/?utm_source=google', attrs: { 'data-consent': 'pending' } });
  p.api('track', 'Early');
  await p.settle(3000);
  assert.equal(p.sent.fetches.length + p.sent.beacons.length, 0);
  assert.equal(prof.local.writes, 0, 'nothing stored before consent');
  assert.equal(prof.jar.size, 0);
  assert.equal(prof.local.getItem('_mt_aid'), null);
  p.api('consent', true);
  await p.settle(1000);
  assert.deepEqual(p.messages().map(m => m.event || m.type), ['page', 'Early']);
  assert.equal(prof.local.getItem('_mt_aid'), p.messages()[0].anonymousId);
  assert.equal(prof.local.json('_mt_ft').source, 'google');
  assert.equal(prof.jar.get('_mt_aid'), p.messages()[0].anonymousId);

  p.api('track', 'Queued');
  p.api('consent', false);
  p.api('track', 'After');
  await p.settle(3000);
  assert.deepEqual(p.messages().map(m => m.event || m.type), ['page', 'Early']);
  assert.equal(prof.jar.size, 0);
  for (const k of ['_mt_aid', '_mt_ft', '_mt_lt', '_mt_q']) assert.equal(prof.local.getItem(k), null, k);
  assert.equal(prof.local.getItem('_mt_consent'), '0');
  p.api('consent', true); // resumes; what was queued before the refusal stays forgotten
  p.api('track', 'Resumed');
  await p.settle(1000);
  assert.deepEqual(p.messages().map(m => m.event || m.type), ['page', 'Early', 'page', 'Resumed']);
  p.api('consent', false);

  const later = load(prof, {}); // the refusal is remembered
  await later.settle(1000);
  assert.equal(later.messages().length, 0);
  later.api('consent', true);
  await later.settle(1000);
  assert.deepEqual(later.messages().map(m => m.type), ['page'], 'consent given: the current page is recorded');
});

test('Do Not Track with data-respect-dnt sends nothing; without it, DNT is ignored', async () => {
  const quiet = load(profile(), { dnt: true, attrs: { 'data-respect-dnt': 'true' } });
  quiet.api('track', 'X');
  quiet.api('consent', true);
  await quiet.settle(2000);
  assert.equal(quiet.messages().length, 0);
  const loud = load(profile(), { dnt: true });
  await loud.settle(1000);
  assert.equal(loud.messages().length, 1);
});

test('the pre-load stub queue is replayed; identify sets the user id', async () => {
  const stub = [['track', 'Clicked Banner', { banner: 'sale' }], ['identify', 'user-42', { email: 'a@b.kz' }], ['track', 'Later']];
  const p = load(profile(), { stub });
  await p.settle(1000);
  const ms = p.messages();
  assert.deepEqual(ms.map(m => m.event || m.type), ['page', 'Clicked Banner', 'identify', 'Later']);
  assert.deepEqual(ms[1].properties, { banner: 'sale' });
  assert.equal(ms[2].userId, 'user-42');
  assert.deepEqual(ms[2].traits, { email: 'a@b.kz' });
  assert.equal(ms[3].userId, 'user-42');
  assert.equal(ms[1].userId, undefined);
  assert.equal(typeof p.api('anonymousId'), 'string');
  assert.doesNotThrow(() => { p.api('nope'); p.api('track'); p.api('identify'); p.api('constructor'); p.api('toString'); });
  const refused = load(profile(), { stub: [['consent', false], ['track', 'X']] });
  await refused.settle(1000);
  assert.equal(refused.messages().length, 0, 'a consent refusal in the stub applies before the first page view');
});

test('call tracking: a leased number replaces the default, is cached for the session, and falls back on failure', async () => {
  const prof = profile();
  const answer = { number: '+77270000001', display: '+7 727 000 00 01', lease_id: 'L1',
    expires_at: new Date(Date.now() + 20 * 60e3).toISOString(), extend_after_s: 600 };
  const phone = () => h('a', { 'data-mt-phone': '', href: 'tel:+77270000000' }, 'Call: ', h('b', {}, '+7 727 000 00 00'));
  const a = phone();
  const fmt = h('span', { 'data-mt-phone': '', 'data-mt-format': '8 (###) ###-##-##' }, '8 (727) 000-00-00');
  const icon = h('a', { 'data-mt-phone': '', href: 'tel:+77270000000' }, h('i', { class: 'icon-phone' }));
  const button = h('a', { 'data-mt-phone': '', href: 'tel:+77270000000' }, 'Позвонить');
  const p = load(prof, { body: [a, fmt, icon, button], fetch: async (u) => u.endsWith('/lease') ? { status: 200, json: answer } : { status: 200 } });
  await p.settle(0);
  const req = p.sent.fetches.find(f => f.url === 'https://collector.example/api/calltracking/lease');
  assert.deepEqual(req.body, { write_key: 'wk_test', anonymous_id: prof.jar.get('_mt_aid') });
  assert.equal(req.init.headers['Content-Type'], 'text/plain');
  assert.equal(a.textContent, 'Call: +7 727 000 00 01');
  assert.equal(a.getAttribute('href'), 'tel:+77270000001');
  assert.equal(fmt.textContent, '8 (727) 000-00-01');
  assert.equal(icon.childNodes[0].tagName, 'I', 'an element without a phone-looking text keeps its content');
  assert.equal(icon.getAttribute('href'), 'tel:+77270000001');
  assert.equal(button.textContent, 'Позвонить');
  assert.equal(button.getAttribute('href'), 'tel:+77270000001');
  assert.equal(prof.session.json('_mt_lease').lease_id, 'L1');
  await p.settle(600e3); // extended after extend_after_s
  assert.equal(p.sent.fetches.filter(f => f.url.endsWith('/lease')).length, 2);
  assert.equal(p.messages().filter(m => m.type !== 'page').length, 0, 'nothing else is sent for it');

  const next = load(prof, { body: [phone()], fetch: async () => { throw new Error('not expected'); } });
  assert.equal(next.body.childNodes[0].textContent, 'Call: +7 727 000 00 01', 'from the session cache, at once');
  assert.equal(next.sent.fetches.filter(f => f.url.endsWith('/lease')).length, 0);

  const down = load(profile(), { body: [phone(), h('span', { 'data-mt-phone': '', 'data-mt-default': '+7 727 111 11 11' }, '…')],
    fetch: async (u) => { if (u.endsWith('/lease')) throw new TypeError('network'); return { status: 200 }; } });
  await down.settle(0);
  assert.equal(down.body.childNodes[0].textContent, 'Call: +7 727 000 00 00');
  assert.equal(down.body.childNodes[0].getAttribute('href'), 'tel:+77270000000');
  assert.equal(down.body.childNodes[1].textContent, '+7 727 111 11 11');

  const exhausted = load(profile(), { body: [phone()], fetch: async (u) => u.endsWith('/lease')
    ? { status: 200, json: { number: '+77270000000', display: '+7 727 000 00 00', lease_id: null, expires_at: null, extend_after_s: 300, pool_exhausted: true } }
    : { status: 200 } });
  await exhausted.settle(0);
  assert.equal(exhausted.body.childNodes[0].getAttribute('href'), 'tel:+77270000000');

  const slow = load(profile(), { body: [phone(), h('span', { 'data-mt-phone': '', 'data-mt-default': '+7 727 111 11 11' }, '')],
    fetch: (u, init) => u.endsWith('/lease') ? new Promise((_, fail) => init.signal.addEventListener('abort', () => fail(new Error('aborted'))))
      : { status: 200 } });
  await slow.settle(0);
  assert.equal(slow.body.childNodes[1].textContent, '', 'waiting for the answer');
  await slow.settle(2000); // no answer within 2 s: the default number
  assert.equal(slow.body.childNodes[0].textContent, 'Call: +7 727 000 00 00');
  assert.equal(slow.body.childNodes[1].textContent, '+7 727 111 11 11');

  const off = load(profile(), { body: [phone()], attrs: { 'data-calltracking': 'off' } });
  await off.settle(0);
  assert.equal(off.sent.fetches.filter(f => f.url.endsWith('/lease')).length, 0);
});

test('blocked cookies and storage: the tracker still works from memory', async () => {
  const p = load(profile(), { blockStorage: true, url: 'https://shop.kz/?utm_source=vk' });
  p.api('track', 'X');
  await p.settle(1000);
  const ms = p.messages();
  assert.equal(ms.length, 2);
  assert.equal(ms[0].anonymousId, ms[1].anonymousId);
  assert.equal(ms[0].context.campaign.source, 'vk');
});

test('without crypto.randomUUID (http: pages) ids are still UUIDv4', async () => {
  const crypto = { getRandomValues: a => webcrypto.getRandomValues(a) };
  const p = load(profile(), { crypto });
  await p.settle(1000);
  const [m] = p.messages();
  assert.match(m.anonymousId, UUID);
  assert.match(m.messageId, UUID);
  assert.notEqual(m.anonymousId, m.messageId);
});
