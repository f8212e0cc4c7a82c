// Live fleet: every data-refresh-ms, while the tab is visible, fetch this same page and swap in its
// rows and online count. A failed fetch, or an answer without the table (the session expired and
// the server sent the sign-in page), stops the refresh and says so; reloading starts it again.
(function () {
  'use strict';
  var table = document.querySelector('table.fleet[data-refresh-ms]');
  if (!table || !window.fetch || !window.DOMParser) return;
  var every = parseInt(table.dataset.refreshMs, 10);
  if (!(every > 0)) return;
  var busy = false, timer = null;

  function stop(why) {
    clearInterval(timer);
    var p = document.querySelector('p.summary');
    if (p) p.setAttribute('data-live', 'stopped: ' + why);
  }

  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(location.href, {credentials: 'same-origin', headers: {'Accept': 'text/html'}})
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var rows = doc.querySelector('table.fleet tbody');
        var count = doc.getElementById('online-count');
        if (!rows) throw new Error('signed out');
        document.querySelector('table.fleet tbody').replaceWith(document.adoptNode(rows));
        if (count) document.getElementById('online-count').textContent = count.textContent;
        table.dataset.refreshedAt = String(Date.now());
      })
      .catch(function (err) { stop(err.message); })
      .then(function () { busy = false; });
  }

  timer = setInterval(refresh, every);
})();
