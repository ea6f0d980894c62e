// The dashboard's only script: it reads the JSON API of the page's own
// origin and keeps the page current from its event stream. No framework,
// no build step; every value from the server goes into the page as text
// (textContent), never as markup.
'use strict';

(function () {
  var STATES = ['running', 'starting', 'suspending', 'suspended', 'finished'];
  var $ = function (id) { return document.getElementById(id); };

  // --- fetching and formatting -------------------------------------------

  function getJSON(url) {
    return fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin' })
      .then(function (res) {
        return res.json().catch(function () { return null; }).then(function (body) {
          if (res.status === 401) { toSignIn(); }
          if (!res.ok) {
            throw new Error((body && body.detail) || ('HTTP ' + res.status));
          }
          return body;
        });
      });
  }

  // --- signing in and out ---------------------------------------------------

  // toSignIn sends the browser to the sign-in page, which brings it back
  // here after (the server checks that "next" stays on the dashboard).
  function toSignIn() {
    location.assign('signin?next=' + encodeURIComponent(location.pathname + location.search));
  }

  function post(url, body) {
    var init = { method: 'POST', credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (res) {
      return res.json().catch(function () { return null; }).then(function (b) {
        if (!res.ok) { throw new Error((b && b.detail) || ('HTTP ' + res.status)); }
        return b;
      });
    });
  }

  // sessionControl adds "Signed in as … / Sign out" to the header when
  // sign-in is on (api/session says so).
  function sessionControl() {
    getJSON('api/session').then(function (s) {
      var header = document.querySelector('header');
      if (!s || !s.signIn || !header) { return; }
      var box = text('div', '', 'session');
      if (s.user) { box.appendChild(text('span', 'Signed in as ' + s.user + ' ', 'muted')); }
      var out = text('button', 'Sign out');
      out.type = 'button';
      out.addEventListener('click', function () {
        post('api/session/end').then(function () { location.assign('signin'); }, showError);
      });
      box.appendChild(out);
      header.appendChild(box);
    }, function () { /* a 401 is on its way to the sign-in page */ });
  }

  function signinPage() {
    var next = new URLSearchParams(location.search).get('next') || '';
    $('next').value = next;
    $('token').focus();
    $('signin').addEventListener('submit', function (e) {
      e.preventDefault();
      $('submit').disabled = true;
      showError(null);
      post('api/session', { token: $('token').value.trim(), next: next }).then(function (s) {
        location.assign(s.next);
      }, function (err) {
        $('submit').disabled = false;
        showError(err);
        $('token').select();
      });
    });
  }

  function showError(err) {
    var el = $('error');
    if (!el) { return; }
    el.hidden = !err;
    el.textContent = err ? String(err.message || err) : '';
  }

  function duration(seconds) {
    if (seconds === undefined || seconds === null) { return '—'; }
    if (seconds === 0) { return '0s'; }
    var d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    var parts = [];
    if (d) { parts.push(d + 'd'); }
    if (h) { parts.push(h + 'h'); }
    if (m && !d) { parts.push(m + 'm'); }
    if (s && !d && !h) { parts.push(s + 's'); }
    return parts.join(' ');
  }

  function ago(iso) {
    if (!iso) { return '—'; }
    var secs = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return duration(secs) + ' ago';
  }

  function text(tag, value, cls) {
    var el = document.createElement(tag);
    el.textContent = value;
    if (cls) { el.className = cls; }
    return el;
  }

  // slashToSearch: "/" outside a field jumps to the search box (#q), as
  // on many sites; it reports whether it did.
  function slashToSearch(e) {
    var t = e.target;
    var typingHere = t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA';
    if (e.key !== '/' || typingHere || e.ctrlKey || e.metaKey || e.altKey || !$('q')) { return false; }
    e.preventDefault();
    $('q').focus();
    return true;
  }

  function sandboxHref(ns, name) {
    return 'sandbox?namespace=' + encodeURIComponent(ns) + '&name=' + encodeURIComponent(name);
  }

  // --- the live region and the event stream -------------------------------

  // Announcements are throttled: a screen reader should hear "12 sandboxes
  // changed" every few seconds, not every quarter of a second.
  var live = { changes: 0, timer: null, state: 'Connecting…' };

  function say(msg) {
    var el = $('live');
    if (el && el.textContent !== msg) { el.textContent = msg; }
  }

  function noteChanges(n) {
    live.changes += n;
    if (live.timer) { return; }
    live.timer = setTimeout(function () {
      live.timer = null;
      var n = live.changes;
      live.changes = 0;
      say('Live · ' + n + (n === 1 ? ' sandbox' : ' sandboxes') + ' changed at ' + new Date().toLocaleTimeString());
    }, 5000);
  }

  // connect opens the stream. hello and reload mean "load everything";
  // update carries changed rows and the overview.
  function connect(on) {
    if (!window.EventSource) {
      say('This browser cannot receive live updates; reload the page to refresh.');
      on.load();
      return;
    }
    var es = null;
    function open() {
      es = new EventSource('api/events' + (on.query || ''));
      es.addEventListener('hello', function () { say('Live'); on.load(); });
      es.addEventListener('reload', function () { on.load(); });
      es.addEventListener('update', function (e) {
        var u = JSON.parse(e.data);
        on.update(u);
        noteChanges(u.rows.length);
      });
      if (on.extensions) { es.addEventListener('extensions', on.extensions); }
      es.onerror = function () {
        say('Live updates interrupted; reconnecting…');
        // A refused stream is not retried by the browser: ask why (a 401
        // goes to the sign-in page).
        // Signed in still (the stream was refused for another reason: too
        // many open pages), try again a little later.
        var closed = this;
        if (closed.readyState === EventSource.CLOSED) {
          getJSON('api/session').then(function () {
            setTimeout(function () { if (es === closed) { open(); } }, 10000);
          }, showError);
        }
      };
    }
    open();
    // A page the browser keeps in its back-forward cache would keep its
    // stream open, and with it one of the six connections a browser
    // opens to a host over HTTP/1.1: a few pages later the dashboard
    // stalls. The stream closes with the page and opens again (hello:
    // everything reloaded) if the page comes back.
    window.addEventListener('pagehide', function () { es.close(); });
    window.addEventListener('pageshow', function (e) { if (e.persisted) { open(); } });
  }

  // --- overview -----------------------------------------------------------

  // latency reads a duration in seconds: "430 ms", "1.25 s".
  function latency(v) {
    if (v === undefined || v === null) { return '—'; }
    return v < 1 ? Math.round(v * 1000) + ' ms' : v.toFixed(2) + ' s';
  }

  function perSecond(v) {
    return v >= 10 ? v.toFixed(0) : v >= 0.1 ? v.toFixed(1) : v.toFixed(2);
  }

  function sandboxCell(ns, name) {
    var td = document.createElement('td');
    var a = text('a', ns + '/' + name);
    a.href = sandboxHref(ns, name);
    td.appendChild(a);
    return td;
  }

  // renderActivity shows the last hour and the busiest sandboxes; a
  // section whose figures the server does not have stays hidden.
  function renderActivity(o) {
    var hour = o.lastHour;
    $('hour-section').hidden = !hour;
    if (hour) {
      $('hour-window').textContent = hour.sinceStart ? '(since the router started)' : '(' + duration(Math.round(hour.windowSeconds)) + ')';
      $('hour-resumes').textContent = String(hour.resumes);
      $('hour-idle').textContent = String(hour.idleSuspensions);
      $('hour-p50').textContent = latency(hour.resumeP50Seconds);
      $('hour-p99').textContent = latency(hour.resumeP99Seconds);
    }
    var busy = o.busiest;
    $('busiest-section').hidden = !busy;
    if (!busy) { return; }
    $('busiest-window').textContent = busy.intervalSeconds ? '(over the last ' + duration(Math.round(busy.intervalSeconds)) + ')' : '(measuring…)';
    var body = document.querySelector('#busiest tbody');
    body.replaceChildren();
    busy.sandboxes.forEach(function (b) {
      var tr = document.createElement('tr');
      tr.appendChild(sandboxCell(b.namespace, b.name));
      tr.appendChild(text('td', perSecond(b.requestsPerSecond), 'num'));
      body.appendChild(tr);
    });
    $('busiest').hidden = busy.sandboxes.length === 0;
    $('busiest-none').hidden = busy.sandboxes.length > 0 || !busy.intervalSeconds;
  }

  function renderOverview(o) {
    renderActivity(o);
    STATES.forEach(function (s) {
      var el = document.querySelector('.count[data-state="' + s + '"]');
      if (el) { el.textContent = String(o.states[s] || 0); }
    });
    $('total').textContent = '(' + o.sandboxes + ' in all)';
    $('warm-pods').textContent = String(o.warmPool.pods);
    $('warm-ready').textContent = String(o.warmPool.ready);
    $('namespaces').textContent = String(o.namespaces);
    renderPoolFill(o.pools);
    var held = $('held-section');
    if (o.heldRequests === undefined) { held.hidden = true; return; }
    held.hidden = false;
    $('held').textContent = String(o.heldRequests);
    var body = document.querySelector('#waking tbody');
    body.replaceChildren();
    (o.waking || []).forEach(function (w) {
      var tr = document.createElement('tr');
      tr.appendChild(sandboxCell(w.namespace, w.name));
      tr.appendChild(text('td', String(w.heldRequests), 'num'));
      body.appendChild(tr);
    });
  }

  function overviewPage() {
    var load = function () {
      getJSON('api/overview').then(function (o) { showError(null); renderOverview(o); }, showError);
    };
    connect({
      load: load,
      update: function (u) { renderOverview(u.overview); },
      extensions: load
    });
  }

  // --- sandboxes table ----------------------------------------------------

  function tablePage() {
    var form = $('filters');
    var fields = ['q', 'label', 'namespace', 'state', 'kind', 'size'];
    var query = { sort: 'namespace', order: 'asc', page: 1 };
    var onPage = new Map(); // row key -> tr
    var refetch = null;

    var params = new URLSearchParams(location.search);
    fields.forEach(function (f) { if (params.has(f)) { $(f).value = params.get(f); } });
    ['sort', 'order'].forEach(function (f) { if (params.has(f)) { query[f] = params.get(f); } });
    if (params.has('page')) { query.page = Math.max(1, parseInt(params.get('page'), 10) || 1); }

    function rowKey(r) {
      return r.kind === 'sandbox' ? r.namespace + '/' + r.name : r.namespace + '#' + r.uid;
    }

    function queryString() {
      var p = new URLSearchParams();
      fields.forEach(function (f) {
        var v = $(f).value.trim();
        if (v && !(f === 'kind' && v === 'sandbox') && !(f === 'size' && v === '50')) { p.set(f, v); }
      });
      if (query.sort !== 'namespace') { p.set('sort', query.sort); }
      if (query.order !== 'asc') { p.set('order', query.order); }
      if (query.page > 1) { p.set('page', String(query.page)); }
      return p.toString();
    }

    function load() {
      clearTimeout(refetch);
      refetch = null;
      var qs = queryString();
      history.replaceState(null, '', qs ? '?' + qs : location.pathname);
      getJSON('api/sandboxes' + (qs ? '?' + qs : '')).then(function (t) {
        showError(null);
        render(t);
      }, showError);
    }

    // soon reloads the page of rows at most once a second, for changes
    // that may move rows in or out of it.
    function soon() {
      if (!refetch) { refetch = setTimeout(load, 1000); }
    }

    function cells(tr, r) {
      tr.replaceChildren();
      var td = document.createElement('td');
      td.textContent = r.namespace;
      tr.appendChild(td);
      td = document.createElement('td');
      if (r.kind === 'sandbox') {
        var a = text('a', r.name);
        a.href = sandboxHref(r.namespace, r.name);
        td.appendChild(a);
      } else {
        td.appendChild(text('span', r.name));
        td.appendChild(text('span', ' warm-pool pod', 'tag'));
      }
      tr.appendChild(td);
      tr.appendChild(text('td', r.removed ? 'deleted' : r.state, 'state state-' + (r.removed ? 'deleted' : r.state)));
      tr.appendChild(text('td', r.pod || '—'));
      tr.appendChild(text('td', r.podIP || '—'));
      var age = text('td', r.created ? duration(Math.max(0, Math.round((Date.now() - Date.parse(r.created)) / 1000))) : '—');
      if (r.created) { age.title = r.created; }
      tr.appendChild(age);
      var act = text('td', ago(r.lastActivity));
      if (r.lastActivity) { act.title = r.lastActivity; }
      tr.appendChild(act);
      tr.appendChild(text('td', r.idleTimeoutSeconds === 0 ? 'never' : duration(r.idleTimeoutSeconds)));
      tr.appendChild(text('td', duration(r.idleLeftSeconds)));
      tr.appendChild(text('td', r.openRequests === undefined ? '—' : String(r.openRequests), 'num'));
      tr.appendChild(text('td', r.heldRequests === undefined ? '—' : String(r.heldRequests), 'num'));
    }

    function render(t) {
      var body = $('rows');
      var focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.textContent : null;
      body.replaceChildren();
      onPage.clear();
      t.rows.forEach(function (r) {
        var tr = document.createElement('tr');
        cells(tr, r);
        onPage.set(rowKey(r), tr);
        body.appendChild(tr);
      });
      if (focused) {
        var again = Array.prototype.find.call(body.querySelectorAll('a'), function (a) { return a.textContent === focused; });
        if (again) { again.focus(); }
      }
      var pages = Math.max(1, Math.ceil(t.total / t.size));
      var from = t.total ? (t.page - 1) * t.size + 1 : 0;
      var to = Math.min(t.total, t.page * t.size);
      $('summary').textContent = t.total ? from + '–' + to + ' of ' + t.total : 'Nothing matches.';
      $('pageinfo').textContent = 'Page ' + t.page + ' of ' + pages;
      $('prev').disabled = t.page <= 1;
      $('next').disabled = t.page >= pages;
      Array.prototype.forEach.call($('state').options, function (o) {
        if (o.value) { o.textContent = o.value + ' (' + (t.counts[o.value] || 0) + ')'; }
      });
      document.querySelectorAll('th[data-sort]').forEach(function (th) {
        if (th.dataset.sort === query.sort) {
          th.setAttribute('aria-sort', query.order === 'desc' ? 'descending' : 'ascending');
        } else {
          th.removeAttribute('aria-sort');
        }
      });
    }

    // matches says whether a changed row could belong in the table as
    // filtered; the server decides where.
    function matches(r) {
      var kind = $('kind').value, ns = $('namespace').value.trim(), st = $('state').value;
      var q = $('q').value.trim().toLowerCase();
      if (kind === 'sandbox' && r.kind !== 'sandbox') { return false; }
      if (kind === 'warm-pool-pod' && r.kind === 'sandbox') { return false; }
      if (ns && r.namespace !== ns) { return false; }
      if (st && r.state !== st && !r.removed) { return false; }
      // Rows carry no labels: with a label filter, let the server decide.
      if ($('label').value.trim()) { return true; }
      return !q || (r.namespace + '/' + r.name).indexOf(q) >= 0;
    }

    function update(u) {
      u.rows.forEach(function (r) {
        var tr = onPage.get(rowKey(r));
        if (tr && !r.removed && matches(r) && !$('label').value.trim() && query.sort !== 'state' && query.sort !== 'lastActivity') {
          cells(tr, r); // in place: its position cannot have changed
        } else if (tr || matches(r)) {
          if (tr) { cells(tr, r); }
          soon();
        }
      });
    }

    var typing = null;
    form.addEventListener('input', function (e) {
      if (e.target.tagName !== 'INPUT') { return; }
      clearTimeout(typing);
      typing = setTimeout(function () { query.page = 1; load(); }, 250);
    });
    form.addEventListener('change', function (e) {
      if (e.target.tagName === 'SELECT') { query.page = 1; load(); }
    });
    form.addEventListener('submit', function (e) { e.preventDefault(); query.page = 1; load(); });
    document.querySelectorAll('th[data-sort] button').forEach(function (b) {
      b.addEventListener('click', function () {
        var key = b.parentElement.dataset.sort;
        if (query.sort === key) {
          query.order = query.order === 'asc' ? 'desc' : 'asc';
        } else {
          query.sort = key;
          query.order = key === 'lastActivity' ? 'desc' : 'asc';
        }
        query.page = 1;
        load();
      });
    });
    $('prev').addEventListener('click', function () { if (query.page > 1) { query.page--; load(); } });
    $('next').addEventListener('click', function () { query.page++; load(); });

    // Keyboard: "/" jumps to the search box; up and down arrows move
    // between the rows' links.
    document.addEventListener('keydown', function (e) {
      var t = e.target;
      if (slashToSearch(e)) { return; }
      if ((e.key === 'ArrowDown' || e.key === 'ArrowUp') && $('rows').contains(t)) {
        var links = Array.prototype.slice.call($('rows').querySelectorAll('a'));
        var i = links.indexOf(t);
        var next = links[i + (e.key === 'ArrowDown' ? 1 : -1)];
        if (next) { e.preventDefault(); next.focus(); }
      }
    });

    connect({ load: load, update: update });
  }

  // --- one sandbox ----------------------------------------------------------

  function facts(dl, pairs) {
    dl.replaceChildren();
    pairs.forEach(function (p) {
      dl.appendChild(text('dt', p[0]));
      dl.appendChild(text('dd', p[1]));
    });
  }

  function sandboxPage() {
    var params = new URLSearchParams(location.search);
    var ns = params.get('namespace') || 'default', name = params.get('name') || '';
    $('title').textContent = ns + '/' + name;
    document.title = ns + '/' + name + ' · sandbox-router';

    function load() {
      getJSON('api/sandboxes/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name)).then(function (a) {
        showError(null);
        var r = a.sandbox;
        facts($('details'), [
          ['State', r.state],
          ['UID', r.uid],
          ['Pod', r.pod || '—'],
          ['Pod address', r.podIP || '—'],
          ['Created', r.created ? ago(r.created) + ' (' + r.created + ')' : '—'],
          ['Last activity', r.lastActivity ? ago(r.lastActivity) + ' (' + r.lastActivity + ')' : '—'],
          ['Idle timeout in effect', r.idleTimeoutSeconds === 0 ? 'never' : duration(r.idleTimeoutSeconds)],
          ['Suspends in (estimate)', duration(r.idleLeftSeconds)],
          ['Open requests here', r.openRequests === undefined ? '—' : String(r.openRequests)],
          ['Held requests here', r.heldRequests === undefined ? '—' : String(r.heldRequests)]
        ]);
        var lc = a.lifecycle || {};
        facts($('lifecycle'), [
          ['Idle timeout', lc.idleTimeoutSeconds === undefined ? 'not set' : (lc.idleTimeoutSeconds === 0 ? 'never' : duration(lc.idleTimeoutSeconds))],
          ['Hold timeout', lc.holdTimeoutSeconds === undefined ? 'not set' : duration(lc.holdTimeoutSeconds)],
          ['Release held requests on', lc.release || 'router default'],
          ['Recorded activity', lc.lastActivity || '—'],
          ['Revision', lc.revision || '—']
        ]);
        renderObject(a);
        $('curl').textContent = a.curl;
        renderExamples(a.examples || []);
        renderEvents(a.events);
      }, showError);
    }

    // renderObject shows what the sandbox's object says: labels,
    // conditions and the ports of its pod template.
    function renderObject(a) {
      var labels = Object.keys(a.labels || {}).sort();
      facts($('labels'), labels.map(function (k) { return [k, a.labels[k]]; }));
      $('labels-none').hidden = labels.length > 0;
      var rows = function (id, list, cols) {
        var body = $(id);
        body.replaceChildren();
        (list || []).forEach(function (x) {
          var tr = document.createElement('tr');
          cols.forEach(function (c) { tr.appendChild(text('td', x[c] === undefined || x[c] === '' ? '—' : String(x[c]))); });
          body.appendChild(tr);
        });
        $(id + '-none').hidden = (list || []).length > 0;
      };
      rows('conditions', a.conditions, ['type', 'status', 'reason']);
      rows('ports', a.ports, ['container', 'name', 'number', 'protocol']);
      $('details-cut').hidden = !a.detailsCut;
    }

    // renderEvents lists the sandbox's recent events, newest first; the
    // section stays hidden when the server keeps none.
    function renderEvents(events) {
      $('events-section').hidden = !events;
      if (!events) { return; }
      var ol = $('events');
      ol.replaceChildren();
      events.forEach(function (e) {
        var li = document.createElement('li');
        var t = text('time', new Date(e.at).toLocaleTimeString());
        t.dateTime = e.at;
        t.title = e.at;
        li.appendChild(t);
        li.appendChild(document.createTextNode(' ' + e.text + (e.count > 1 ? ' (×' + e.count + ', the last at this time)' : '')));
        ol.appendChild(li);
      });
      $('events-none').hidden = events.length > 0;
    }

    function renderExamples(examples) {
      var box = $('examples');
      box.replaceChildren();
      examples.forEach(function (ex, i) {
        var id = 'example-' + i;
        box.appendChild(text('p', ex.title));
        var pre = document.createElement('pre');
        var code = text('code', ex.command);
        code.id = id;
        pre.appendChild(code);
        box.appendChild(pre);
        var b = text('button', 'Copy command');
        b.type = 'button';
        b.dataset.copy = id;
        b.setAttribute('aria-label', 'Copy: ' + ex.title);
        box.appendChild(b);
      });
    }

    // Every copy button names the code element it copies (data-copy).
    $('main').addEventListener('click', function (e) {
      var btn = e.target.closest('button[data-copy]');
      if (!btn) { return; }
      var code = $(btn.dataset.copy);
      var done = function (msg) { $('copied').textContent = msg; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(code.textContent).then(function () { done('Copied.'); },
          function () { done('Copying failed; select the command and copy it.'); });
        return;
      }
      var range = document.createRange();
      range.selectNodeContents(code);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      done('Selected: press Ctrl+C (⌘C) to copy.');
    });

    connect({
      load: load,
      // Named, so that a viewer who may get this sandbox but not list its
      // namespace follows it too.
      query: '?namespace=' + encodeURIComponent(ns) + '&name=' + encodeURIComponent(name),
      update: function (u) {
        if (u.rows.some(function (r) { return r.kind === 'sandbox' && r.namespace === ns && r.name === name; })) { load(); }
      }
    });
  }

  // --- warm pools, templates and claims (the extensions API) -------------

  function num(n) { return text('td', String(n), 'num'); }

  function linkCell(label, href) {
    var td = document.createElement('td');
    if (!label) { td.textContent = '—'; return td; }
    var a = text('a', label);
    a.href = href;
    td.appendChild(a);
    return td;
  }

  function renderPoolFill(f) {
    if (!f || !$('fill-pools')) { return; }
    var status = $('fill-status');
    status.hidden = f.watched;
    status.textContent = f.watched ? '' : 'The extensions API (warm pools, templates, claims) is not watched by this router.';
    $('fill-pools').textContent = String(f.pools);
    $('fill-desired').textContent = String(f.desired);
    $('fill-ready').textContent = String(f.ready);
    $('fill-unclaimed').textContent = String(f.unclaimed);
    var body = document.querySelector('#short-pools tbody');
    body.replaceChildren();
    f.short.forEach(function (p) {
      var tr = document.createElement('tr');
      tr.appendChild(linkCell(p.namespace + '/' + p.name, 'warmpools?namespace=' + encodeURIComponent(p.namespace) + '&q=' + encodeURIComponent(p.name)));
      tr.appendChild(text('td', p.template || '—'));
      tr.appendChild(num(p.desired));
      tr.appendChild(num(p.ready));
      tr.appendChild(num(p.shortfall));
      body.appendChild(tr);
    });
  }

  // kindStatusText says why a list may be empty for another reason than
  // there being nothing: not watched, not served, failing, not synced.
  function kindStatusText(a) {
    if (!a.watched) { return 'The extensions API is not watched by this router: nothing to show.'; }
    var k = a.kindStatus;
    if (!k) { return ''; }
    if (!k.served) { return 'The API server does not serve ' + k.resource + ' (extensions.agents.x-k8s.io): is its CRD installed?'; }
    if (k.error) { return (k.forbidden ? 'Forbidden: ' : 'Cannot list: ') + k.error; }
    if (!k.synced) { return 'Still loading ' + k.resource + '…'; }
    return '';
  }

  function warmPoolCells(tr, p) {
    tr.appendChild(text('td', p.namespace));
    tr.appendChild(text('td', p.name));
    tr.appendChild(linkCell(p.template, 'templates?namespace=' + encodeURIComponent(p.namespace) + '&q=' + encodeURIComponent(p.template)));
    tr.appendChild(num(p.desired));
    tr.appendChild(num(p.ready));
    tr.appendChild(num(p.unclaimed));
    tr.appendChild(num(p.shortfall));
    tr.appendChild(text('td', ago(p.created)));
  }

  function templateCells(tr, t) {
    tr.appendChild(text('td', t.namespace));
    tr.appendChild(text('td', t.name));
    var names = [], images = [], ports = [];
    t.containers.forEach(function (c) {
      names.push(c.name);
      images.push(c.image);
      c.ports.forEach(function (p) {
        ports.push((p.name ? p.name + ' ' : '') + p.number + '/' + p.protocol);
      });
    });
    tr.appendChild(text('td', names.join(', ') || '—'));
    tr.appendChild(text('td', images.join(', ') || '—'));
    tr.appendChild(text('td', ports.join(', ') || '—'));
    tr.appendChild(text('td', ago(t.created)));
  }

  function claimCells(tr, c) {
    tr.appendChild(text('td', c.namespace));
    tr.appendChild(text('td', c.name));
    tr.appendChild(linkCell(c.warmPool, 'warmpools?namespace=' + encodeURIComponent(c.namespace) + '&q=' + encodeURIComponent(c.warmPool || '')));
    tr.appendChild(linkCell(c.template, 'templates?namespace=' + encodeURIComponent(c.namespace) + '&q=' + encodeURIComponent(c.template || '')));
    var sb = linkCell(c.sandbox, sandboxHref(c.namespace, c.sandbox || ''));
    if (c.sandboxState) { sb.appendChild(text('span', ' ' + c.sandboxState, 'tag')); }
    tr.appendChild(sb);
    tr.appendChild(text('td', c.phase, 'state state-' + (c.phase === 'ready' ? 'running' : c.phase === 'deleting' ? 'deleted' : 'starting')));
    tr.appendChild(text('td', c.reason || '—'));
    var exp = text('td', c.expires ? new Date(c.expires).toLocaleString() : 'never');
    tr.appendChild(exp);
    tr.appendChild(text('td', ago(c.created)));
  }

  // extensionsPage is the list page of one kind: search, namespace and
  // page size in the URL, the list refetched whenever the stream says the
  // catalog changed (the event names nothing; the server filters).
  function extensionsPage(api, cells) {
    var form = $('filters');
    var fields = ['q', 'namespace', 'size'];
    var pageNo = 1;
    var params = new URLSearchParams(location.search);
    fields.forEach(function (f) { if (params.has(f)) { $(f).value = params.get(f); } });
    if (params.has('page')) { pageNo = Math.max(1, parseInt(params.get('page'), 10) || 1); }

    function queryString() {
      var p = new URLSearchParams();
      fields.forEach(function (f) {
        var v = $(f).value.trim();
        if (v && !(f === 'size' && v === '50')) { p.set(f, v); }
      });
      if (pageNo > 1) { p.set('page', String(pageNo)); }
      return p.toString();
    }

    function render(a) {
      var status = kindStatusText(a);
      $('kind-status').hidden = !status;
      $('kind-status').textContent = status;
      var body = $('rows');
      body.replaceChildren();
      a.items.forEach(function (it) {
        var tr = document.createElement('tr');
        cells(tr, it);
        body.appendChild(tr);
      });
      var pages = Math.max(1, Math.ceil(a.total / a.size));
      var from = a.total ? (a.page - 1) * a.size + 1 : 0;
      $('summary').textContent = a.total ? from + '–' + Math.min(a.total, a.page * a.size) + ' of ' + a.total : 'Nothing matches.';
      $('pageinfo').textContent = 'Page ' + a.page + ' of ' + pages;
      $('prev').disabled = a.page <= 1;
      $('next').disabled = a.page >= pages;
    }

    function load() {
      var qs = queryString();
      history.replaceState(null, '', qs ? '?' + qs : location.pathname);
      getJSON(api + (qs ? '?' + qs : '')).then(function (a) { showError(null); render(a); }, showError);
    }

    var typing = null;
    form.addEventListener('input', function (e) {
      if (e.target.tagName !== 'INPUT') { return; }
      clearTimeout(typing);
      typing = setTimeout(function () { pageNo = 1; load(); }, 250);
    });
    form.addEventListener('change', function (e) {
      if (e.target.tagName === 'SELECT') { pageNo = 1; load(); }
    });
    form.addEventListener('submit', function (e) { e.preventDefault(); pageNo = 1; load(); });
    $('prev').addEventListener('click', function () { if (pageNo > 1) { pageNo--; load(); } });
    $('next').addEventListener('click', function () { pageNo++; load(); });
    document.addEventListener('keydown', slashToSearch);

    connect({ load: load, update: function () {}, extensions: load });
  }

  var page = document.body.dataset.page;
  if (page === 'signin') { signinPage(); } else { sessionControl(); }
  if (page === 'overview') { overviewPage(); }
  if (page === 'sandboxes') { tablePage(); }
  if (page === 'sandbox') { sandboxPage(); }
  if (page === 'warmpools') { extensionsPage('api/warmpools', warmPoolCells); }
  if (page === 'templates') { extensionsPage('api/templates', templateCells); }
  if (page === 'claims') { extensionsPage('api/claims', claimCells); }
})();
