"""The style sheets and the one script of fanout's pages, inlined into each page.

Inline, so a page is one response (no extra routes, no cache to go stale, and a page
saved to a file still works). The script is plain ES5-level JavaScript with no library.
It writes only ``textContent`` and attributes, never markup, so no text a source sends
can become markup, and it sets ``href``/``src`` only to paths starting with one "/".
"""
from __future__ import annotations

# Shared by the status page and the admin UI.
PAGE_STYLE = """
:root{--ink:#1b1f24;--muted:#5b6470;--line:#d8dde3;--band:#f3f5f8;--accent:#0b63c5}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:#fff}
header.top{padding:1.2em 2em;background:#14324f;color:#fff}
header.top h1{margin:0;font-size:1.5em;font-weight:600;overflow-wrap:anywhere}
header.top p{margin:.3em 0 0;color:#c9d7e6}
header.top a{color:#fff}
main{padding:1em 2em}
footer{padding:1em 2em;color:var(--muted);border-top:1px solid var(--line);font-size:.9em}
a{color:var(--accent)}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}
th,td{border-bottom:1px solid var(--line);padding:.55em .6em;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
th{background:var(--band);font-weight:600;font-size:.9em;color:var(--muted);
overflow-wrap:normal;white-space:nowrap}
h2{font-size:1.15em;margin:1.2em 0 .3em}
"""

STATUS_STYLE = """
tr.mount td.stream{min-width:14em}
.server_name{font-weight:600;font-size:1.05em;color:inherit;text-decoration:none}
a.server_name[href]{color:var(--accent)}
.server_description{color:var(--muted)}
.genre{display:inline-block;margin:.2em 0;padding:0 .5em;border-radius:.8em;
background:var(--band);font-size:.85em}
a.listen{display:block;font-family:ui-monospace,monospace;font-size:.85em}
td.title{font-style:italic}
.listeners{font-size:1.3em;font-weight:600}
.in_cluster:has(.cluster_listeners:empty){display:none}
audio{width:16em;max-width:100%}
tr.gone{opacity:.5}
#live{color:var(--muted);font-size:.9em}
#live.on::before{content:"\\25CF\\a0";color:#1a8f3a}
"""

ADMIN_STYLE = """
nav.admin{padding:.5em 2em;background:var(--band);border-bottom:1px solid var(--line)}
nav.admin a{margin-right:1.2em}
form.inline{display:inline;margin:0}
form.action{margin:.2em 0}
input[type=text]{width:14em;max-width:100%}
button{cursor:pointer}
button.danger{color:#a31515}
.badge{display:inline-block;padding:0 .45em;border-radius:.6em;background:#fde7c2;font-size:.8em}
.result.ok{color:#1a8f3a}.result.failed{color:#a31515}
dl.server{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.server dt{color:var(--muted)}dl.server dd{margin:0}
td.raw a{margin-right:.6em;font-size:.85em}
"""

# The status page's live updates; `__TEXT_FIELDS__` becomes status_page.TEXT_FIELDS.
STATUS_SCRIPT = """
(function () {
  "use strict";
  var FIELDS = __TEXT_FIELDS__;
  var url = document.documentElement.getAttribute("data-events");
  var table = document.getElementById("mounts");
  var template = document.getElementById("mount-row");
  var live = document.getElementById("live");
  if (!url || !window.EventSource || !table || !template) { return; }
  var body = table.tBodies[0];
  var empty = body.querySelector("tr.empty");

  function isPath(path) {
    return typeof path === "string" && path.charAt(0) === "/" && path.charAt(1) !== "/";
  }
  function find(path) {
    var rows = body.querySelectorAll("tr.mount");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-path") === path) { return rows[i]; }
    }
    return null;
  }
  function showEmpty() {
    if (empty) { empty.hidden = body.querySelector("tr.mount") !== null; }
  }
  function newRow(data) {
    var row = template.content.querySelector("tr.mount").cloneNode(true);
    row.setAttribute("data-path", data.path);
    row.querySelector("a.listen").setAttribute("href", data.path);
    row.querySelector("audio").setAttribute("src", data.path);
    row.querySelector("a.m3u").setAttribute("href", data.path + ".m3u");
    row.querySelector("a.xspf").setAttribute("href", data.path + ".xspf");
    var rows = body.querySelectorAll("tr.mount"), before = empty;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-path") > data.path) { before = rows[i]; break; }
    }
    body.insertBefore(row, before);
    return row;
  }
  function apply(data) {
    if (!data || !isPath(data.path)) { return; }
    var row = find(data.path) || newRow(data);
    row.className = "mount";
    row.setAttribute("data-mount", data.mount || "");
    row.querySelector("a.listen").textContent = data.mount || "";
    FIELDS.forEach(function (field) {
      var element = row.querySelector("." + field);
      if (element) { element.textContent = data[field] || ""; }
    });
    var name = row.querySelector("a.server_name");
    if (/^https?:\\/\\//i.test(data.server_url || "")) {
      name.setAttribute("href", data.server_url);
      name.setAttribute("rel", "nofollow noopener");
    } else {
      name.removeAttribute("href");
    }
    var since = row.querySelector("time.stream_start");
    since.setAttribute("datetime", data.stream_start_iso8601 || "");
    showEmpty();
  }
  function gone(data) {
    var row = data && find(data.path);
    if (!row) { return; }
    var audio = row.querySelector("audio");
    if (audio && !audio.paused) {
      row.className = "mount gone";  // someone is listening (maybe moved to a fallback)
    } else {
      row.parentNode.removeChild(row);
    }
    showEmpty();
  }
  function handler(apply) {
    return function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      apply(data);
    };
  }
  var source = new EventSource(url);
  source.addEventListener("mount", handler(apply));
  source.addEventListener("gone", handler(gone));
  source.onopen = function () {
    live.className = "on";
    live.firstChild.textContent = "Live: figures change as they happen. ";
  };
  source.onerror = function () {
    live.className = "";
    live.firstChild.textContent = "Connection lost, reconnecting. ";
  };
}());
"""
