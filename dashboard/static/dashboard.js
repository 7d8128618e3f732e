// Switchyard dashboard: progressive enhancement of server-rendered pages
// (no build step). Every page works without this file; with it, the live
// parts follow the server through Server-Sent Events.
"use strict";

const prefix = document.body.dataset.prefix || "/dashboard/";

// Forms that destroy something ask first.
document.addEventListener("submit", (e) => {
  const form = e.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    e.preventDefault();
  }
});

// fetchFragment loads the HTML of a live region; a session that ended
// (redirect to the login page) reloads the page, which then shows it.
async function fetchFragment(url) {
  const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (res.redirected && new URL(res.url).pathname === prefix + "login") {
    window.location.reload();
    return null;
  }
  if (!res.ok) return null;
  return res.text();
}

// replaceKeepingFocus swaps a region's content without losing the
// keyboard focus when the focused element has an equivalent in the new
// content (same id, or same form action and hidden id).
function replaceKeepingFocus(region, html) {
  const active = document.activeElement;
  const inside = active && region.contains(active);
  const key = inside ? focusKey(active) : null;
  region.innerHTML = html;
  if (key) {
    const again = [...region.querySelectorAll("a, button, input, select, textarea, [tabindex]")].find((el) => focusKey(el) === key);
    if (again) again.focus();
  }
}

function focusKey(el) {
  const form = el.closest("form");
  const id = form && form.querySelector("input[name=id]");
  return [el.tagName, el.id, el.getAttribute("href"), form && form.getAttribute("action"), id && id.value].join("|");
}

// stream opens an EventSource that comes back after errors, with backoff.
function stream(url, handlers, onState) {
  let es, delay = 500, closed = false;
  const open = () => {
    es = new EventSource(url);
    es.onopen = () => { delay = 500; onState && onState("open"); };
    for (const [name, fn] of Object.entries(handlers)) es.addEventListener(name, (ev) => fn(JSON.parse(ev.data)));
    es.onerror = () => {
      es.close();
      onState && onState("retrying");
      if (!closed) setTimeout(open, delay);
      delay = Math.min(delay * 2, 15000);
    };
  };
  open();
  return () => { closed = true; es.close(); };
}

// Overview: figures and charts from the sample stream.
const figures = document.querySelector("[data-live-stats]");
if (figures) {
  const fields = [...figures.querySelectorAll("[data-field]")];
  const series = {};
  const keep = 600;
  const format = (field, v) => (["connections", "users", "channels"].includes(field) ? String(v) : v >= 100 ? Math.round(v).toString() : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  fetch(prefix + "stats", { headers: { Accept: "application/json" } }).then((r) => r.ok ? r.json() : null).then((d) => {
    if (!d) return;
    for (const el of fields) series[el.dataset.field] = d.samples.map((s) => s[el.dataset.field]);
    stream(figures.dataset.liveStats, {
      sample: (s) => {
        for (const el of fields) {
          const f = el.dataset.field;
          const list = (series[f] ||= []);
          list.push(s[f]);
          if (list.length > keep) list.shift();
          el.querySelector("[data-value]").textContent = format(f, s[f]);
          draw(el.querySelector("svg path"), list);
        }
      },
    });
  });
}

function draw(path, values) {
  if (!path || values.length < 2) return;
  const top = Math.max(1, ...values);
  const w = 120, h = 32;
  path.setAttribute("d", values.map((v, i) => `${i ? "L" : "M"}${(i / (values.length - 1) * w).toFixed(1)} ${(h - v / top * (h - 2) - 1).toFixed(1)}`).join(""));
}

// Connections: the list refreshes itself; typing searches.
const conns = document.querySelector("[data-refresh]");
if (conns) {
  const search = document.querySelector("[data-live-search]");
  const url = () => prefix + "connections?fragment=1&q=" + encodeURIComponent(search ? search.value : "");
  const refresh = async () => {
    const html = await fetchFragment(url());
    if (html !== null) replaceKeepingFocus(conns, html);
  };
  let timer;
  if (search) {
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        const q = search.value;
        history.replaceState(null, "", q ? "?q=" + encodeURIComponent(q) : location.pathname);
        refresh();
      }, 250);
    });
  }
  setInterval(() => { if (!document.hidden) refresh(); }, 2000);
}

// Channel: the live tail.
const tail = document.querySelector("[data-live-tail]");
if (tail) {
  const state = document.querySelector("[data-tail-state]");
  const add = (kind, text, at) => {
    const li = document.createElement("li");
    const k = document.createElement("span");
    k.className = "kind";
    k.textContent = (at ? new Date(at).toLocaleTimeString() + " " : "") + kind;
    li.append(k, document.createTextNode(text));
    tail.prepend(li);
    while (tail.children.length > 200) tail.lastElementChild.remove();
  };
  stream(tail.dataset.liveTail, {
    message: (m) => {
      if (m.kind === "publication") add(m.offset ? "#" + m.offset : "message", JSON.stringify(m.data) + (m.info ? "  from " + (m.info.user || "anonymous") : ""), m.at);
      else add(m.kind, (m.info.user || "anonymous") + " (" + m.info.client_id + ")", m.at);
    },
    end: (e) => add("ended", e.reason),
  }, (s) => { if (state) state.textContent = s === "open" ? "Live: messages published from now on appear here." : "Reconnecting…"; });
}

// Resource table: reloads its page when the resource changes.
const records = document.querySelector("[data-live-resource]");
if (records) {
  let pending = false;
  const reload = async () => {
    pending = false;
    const u = new URL(records.dataset.self, location.href);
    u.searchParams.set("fragment", "1");
    const html = await fetchFragment(u.toString());
    if (html !== null) {
      replaceKeepingFocus(records, html);
      records.dataset.updated = String(Date.now());
    }
  };
  stream(records.dataset.liveResource, {
    change: () => {
      if (!pending) { pending = true; setTimeout(reload, 150); }
    },
  });
}

// Record form: says when someone else changed the record.
const watched = document.querySelector("[data-watch-record]");
if (watched) {
  const notice = document.querySelector("[data-changed]");
  let saving = false;
  watched.addEventListener("submit", () => { saving = true; });
  stream(watched.dataset.watchRecord, {
    change: (m) => {
      let ev = m.data;
      if (typeof ev === "string") ev = JSON.parse(ev);
      if (!saving && ev && String(ev.pk) === watched.dataset.pk && notice) notice.hidden = false;
    },
  });
}
