// The SPOT cloud dashboard: devices and their live state, a device page with its reports
// plotted and its commands tracked to the device's ACK, forms for every command kind, the
// pending queue and price forecasts. Plain JavaScript: no build step, no library.
//
// Data comes from the service's API with the user's bearer token; the live stream
// (/api/events, Server-Sent Events) says *what* changed and the page then fetches that
// device again, so what is shown is always the service's own view, never a guess.
"use strict";

(() => {
  const TOKEN_KEY = "spot.token";
  const REPORTS = 500; // the newest reports a device page plots

  // ---- the command kinds -------------------------------------------------------------
  // A mirror of host_tools/cloud/command_kinds.py (the API is the judge: it checks every
  // command against the device's capability record; tests/test_cloud_dashboard.py checks
  // this table against that module). roles: null means any role.
  const SETTINGS = {
    telemetry_s: "Telemetry period (s)", power_on: "Power-on state (0 off, 1 on, 2 as before)",
    cal_u: "Voltage calibration", cal_i: "Current calibration", cal_p: "Power calibration",
    limit_ma: "Current limit (mA)", hysteresis: "Hysteresis (0.1 °C)", frost: "Frost guard (0.1 °C)",
    min_on_s: "Minimum on time (s)", min_off_s: "Minimum off time (s)",
    max_shed_s: "Longest shed (s)", max_block_day_s: "Most blocked per day (s)",
    modbus_unit: "Modbus unit", setpoint: "Default setpoint (0.1 °C)",
  };
  const ROLE_SETTINGS = {
    thermostat: ["telemetry_s", "hysteresis", "frost", "min_on_s", "min_off_s", "max_shed_s", "setpoint"],
    smart_plug: ["telemetry_s", "power_on", "cal_u", "cal_i", "cal_p", "limit_ma", "max_shed_s"],
    heat_pump: ["telemetry_s", "min_on_s", "min_off_s", "max_block_day_s", "modbus_unit"],
  };
  const SG_NAMES = { 1: "blocked", 2: "normal", 3: "recommended on", 4: "forced on" };
  const DR_NAMES = { 0: "none", 1: "reduce", 2: "limit", 3: "restore", 4: "shut down", 5: "comfort band" };
  const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

  const num = (name, label, value, min, max, step = 1, extra = {}) =>
    ({ name, label, type: "number", value, min, max, step, ...extra });

  const KINDS = [
    { kind: "setpoint", title: "Setpoint", roles: ["thermostat"],
      fields: [num("value_c", "Temperature (°C)", 21, 5, 30, 0.5),
               num("duration_s", "For (s; 0 = until the program's next step)", 3600, 0, 604800)] },
    { kind: "comfort_band", title: "Comfort band", roles: ["thermostat"],
      fields: [num("low_c", "Low (°C)", 19, 5, 30, 0.5), num("high_c", "High (°C)", 22, 5, 30, 0.5),
               num("duration_s", "For (s)", 3600, 60, 604800)] },
    { kind: "program", title: "Weekly program", roles: ["thermostat"],
      fields: [{ name: "steps", label: "Steps, one a line: day HH:MM °C (the week starts Monday 00:00 here)",
                 type: "textarea", value: "mon 06:30 21\nmon 22:00 17\nsat 08:00 21\nsat 23:00 17" }],
      build: (v) => ({ week_origin: lastMonday(), steps: parseProgram(v.steps) }) },
    { kind: "relay", title: "Relay", roles: ["smart_plug"],
      fields: [{ name: "on", label: "Switch", type: "select", value: "true",
                 options: [["true", "on"], ["false", "off"]] }],
      build: (v) => ({ on: v.on === "true" }) },
    { kind: "sg_state", title: "SG Ready state", button: "Send SG Ready state", roles: ["heat_pump"],
      fields: [{ name: "state", label: "State", type: "select", value: "3",
                 options: Object.entries(SG_NAMES).map(([k, n]) => [k, `${k} ${n}`]) },
               num("duration_s", "For (s; 0 = until changed)", 0, 0, 86400)],
      build: (v) => ({ state: Number(v.state), duration_s: Number(v.duration_s) }) },
    { kind: "reduce", title: "Reduce", roles: null,
      fields: [num("percent", "By (%)", 30, 1, 100), num("duration_s", "For (s)", 900, 60, 86400),
               num("valid_for_s", "Refused if it arrives later than (s; optional)", "", 1, 604800,
                   1, { optional: true })] },
    { kind: "limit", title: "Limit", roles: null,
      fields: [num("watts", "Under (W)", 1000, 0, 100000), num("duration_s", "For (s)", 900, 60, 86400)] },
    { kind: "restore", title: "Restore", roles: null, fields: [],
      note: "Ends any demand-response state now." },
    { kind: "config", title: "Settings", roles: null, fields: null, // one per setting of the role
      note: "Fill in only what should change; the device checks each value's range." },
    { kind: "event", title: "Timed event", roles: null,
      fields: [num("event_id", "Event id", 1, 0, 65535),
               { name: "start", label: "Starts at (blank: in a minute)", type: "datetime-local", value: "" },
               num("duration_s", "For (s)", 900, 1, 86400),
               num("window_s", "Random start spread (s)", 0, 0, 3600),
               num("value", "Value", 1, -1000, 1000)],
      build: (v) => ({ event_id: Number(v.event_id), start: epochOf(v.start) ?? Math.round(nowS()) + 60,
                       duration_s: Number(v.duration_s), window_s: Number(v.window_s), value: Number(v.value) }) },
  ];

  // Read by the browser test, which compares them with command_kinds.py.
  window.SPOT = { KINDS: Object.fromEntries(KINDS.map((k) => [k.kind, k.roles])), ROLE_SETTINGS,
                  SETTINGS: Object.keys(SETTINGS) };

  // ---- what the page knows --------------------------------------------------------------
  let token = localStorage.getItem(TOKEN_KEY) || "";
  let route = { view: "overview" };
  let source = null; // the EventSource
  let reconnect = null;
  const devices = new Map(); // address -> the API's device view
  const page = { address: null, device: null, reports: [], commands: [], formsFor: null };
  const dirty = { all: false, addrs: new Set(), page: false, pending: false };
  let flushTimer = null;

  const $ = (id) => document.getElementById(id);

  // h("a", {href: "#"}, "text", child, ...): an element; text is always text, never HTML.
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // ---- formatting ------------------------------------------------------------------------
  const nowS = () => Date.now() / 1000;
  const pad = (n) => String(n).padStart(2, "0");
  function clock(t) {
    if (!t) return "—";
    const d = new Date(t * 1000);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function fullDate(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
  function ago(t) {
    if (!t) return "never";
    const s = Math.round(nowS() - t);
    if (s < 5) return "just now";
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 172800) return `${Math.round(s / 3600)} h ago`;
    return new Date(t * 1000).toLocaleDateString();
  }
  function until(t) {
    const s = Math.round(t - nowS());
    if (s < -5) return `due ${clock(t)}, overdue`;
    if (s < 90) return `wakes ${clock(t)}`;
    return `wakes ${clock(t)} (in ${Math.round(s / 60)} min)`;
  }
  function duration(s) {
    if (s === null || s === undefined) return "";
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    return `${+(s / 3600).toFixed(1)} h`;
  }
  const deg = (v) => (typeof v === "number" ? `${v.toFixed(1)} °C` : "—");
  const watts = (v) => (typeof v === "number" ? `${v} W` : "—");
  const roleOf = (d) => (d && ((d.capabilities || {}).role || (d.state || {}).role)) || null;
  const roleName = (r) => (r ? r.replace("_", " ") : "not reported yet");

  function relay(d) {
    const s = d.state || {};
    if (typeof s.outputs !== "number" || roleOf(d) === "heat_pump") return "—";
    return s.outputs & 1 ? "on" : "off";
  }
  function sg(d) {
    const v = (d.state || {}).sg_state;
    return typeof v === "number" ? `${v} ${SG_NAMES[v] || ""}` : "—";
  }
  function power(d) {
    const p = (d.state || {}).power_w ?? (d.meter || {}).power_w;
    return watts(p);
  }
  function temperature(d) {
    const s = d.state || {};
    if (typeof s.temp_c !== "number") return "—";
    return typeof s.target_c === "number" ? `${deg(s.temp_c)} / ${deg(s.target_c)}` : deg(s.temp_c);
  }
  function availability(d) {
    const a = d.availability || "unknown";
    const badge = h("span", { class: `badge avail-${a}` }, a);
    const more = a === "asleep" && d.next_wake ? h("span", { class: "muted" }, ` ${until(d.next_wake)}`) : null;
    return [badge, more];
  }
  function summary(kind, p) {
    p = p || {};
    if (kind === "relay") return `relay ${p.on ? "on" : "off"}`;
    if (kind === "sg_state") return `SG Ready ${p.state} ${SG_NAMES[p.state] || ""}${p.duration_s ? ` for ${duration(p.duration_s)}` : ""}`;
    if (kind === "setpoint") return `setpoint ${p.value_c} °C${p.duration_s ? ` for ${duration(p.duration_s)}` : ""}`;
    if (kind === "comfort_band") return `comfort band ${p.low_c}–${p.high_c} °C for ${duration(p.duration_s)}`;
    if (kind === "reduce") return `reduce ${p.percent} % for ${duration(p.duration_s)}`;
    if (kind === "limit") return `limit ${p.watts} W for ${duration(p.duration_s)}`;
    if (kind === "program") return `weekly program, ${(p.steps || []).length} steps`;
    if (kind === "config") return `settings ${Object.entries(p.settings || {}).map(([k, v]) => `${k}=${v}`).join(", ")}`;
    if (kind === "event") return `event ${p.event_id} at ${clock(p.start)} for ${duration(p.duration_s)}`;
    return kind;
  }
  const stateBadge = (s) => h("span", { class: `badge state-${s}` }, s);

  // ---- the API -----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; this.detail = detail; }
  }
  // A 4xx's detail as a sentence: FastAPI's validation errors are a list of {loc, msg}.
  function describe(data) {
    const d = data && typeof data === "object" && "detail" in data ? data.detail : data;
    if (Array.isArray(d)) {
      return d.map((e) => {
        const where = (e.loc || []).filter((x) => x !== "body").join(".");
        return where ? `${where}: ${e.msg}` : e.msg;
      }).join("; ");
    }
    return typeof d === "string" ? d : JSON.stringify(d);
  }
  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new ApiError(0, "the service is unreachable");
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = text; }
    if (r.status === 401) askToken(`The service refused the token: ${describe(data)}`);
    if (!r.ok) throw new ApiError(r.status, describe(data) || r.statusText);
    return data;
  }

  // ---- the token ----------------------------------------------------------------------------
  function takeTokenFromUrl() {
    // `make demo` prints http://.../#token=...: keep it, then drop it from the address bar.
    const params = new URLSearchParams(location.hash.slice(1));
    const t = params.get("token");
    if (!t) return;
    token = t;
    localStorage.setItem(TOKEN_KEY, t);
    params.delete("token");
    const rest = params.toString().replace(/=(&|$)/g, "$1"); // "pending=" -> "pending"
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  function askToken(message, error = true) {
    if (source) { source.close(); source = null; }
    setLive(false, "not connected");
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== "login";
    $("login-error").textContent = message || "";
    $("login-error").className = error ? "error" : "muted";
    $("forget").hidden = true;
    document.querySelector(".top nav").hidden = true;
    $("token-input").focus();
  }

  // ---- the live stream ------------------------------------------------------------------------
  function setLive(on, text) {
    const el = $("live");
    el.className = `live ${on ? "on" : "off"}`;
    el.textContent = text;
  }
  function connect() {
    if (source) source.close();
    clearTimeout(reconnect);
    // EventSource cannot set headers: the API takes the token as ?token= on this route only.
    source = new EventSource(`/api/events?token=${encodeURIComponent(token)}`);
    source.onopen = () => { setLive(true, "live"); mark({ all: true }); };
    source.onerror = () => {
      setLive(false, "reconnecting…");
      if (source && source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error): a refused token shows the form, else retry.
        source = null;
        api("GET", "/api/whoami").then(() => { reconnect = setTimeout(connect, 3000); }, (e) => {
          if (e.status !== 401) reconnect = setTimeout(connect, 3000);
        });
      }
    };
    for (const type of ["availability", "state", "meter", "capabilities"]) {
      source.addEventListener(type, (m) => {
        const ev = JSON.parse(m.data);
        if (ev.device === page.address && (type === "state" || type === "meter") && ev.body) {
          page.reports.push({ t: ev.t, kind: type, body: ev.body }); // plotted at once
          renderCharts();
        }
        mark({ addr: ev.device });
      });
    }
    source.addEventListener("command", (m) => {
      const ev = JSON.parse(m.data);
      // "published" events name only the id: match it against the page's commands.
      const mine = ev.device === page.address || page.commands.some((c) => c.id === ev.id);
      if (mine) {
        const c = page.commands.find((x) => x.id === ev.id);
        if (c) { c.state = ev.state; if ("reason_text" in ev) c.reason_text = ev.reason_text; renderCommands(); }
        mark({ page: true });
      }
      mark({ pending: true });
    });
  }

  // Changes are gathered for a moment and fetched together: a burst of events is one fetch.
  function mark({ all = false, addr = null, page: p = false, pending = false }) {
    if (all) dirty.all = true;
    if (addr) dirty.addrs.add(addr);
    if (p || (addr && addr === page.address)) dirty.page = true;
    if (pending) dirty.pending = true;
    if (!flushTimer) flushTimer = setTimeout(flush, 150);
  }
  async function flush() {
    const d = { all: dirty.all, addrs: [...dirty.addrs], page: dirty.page, pending: dirty.pending };
    dirty.all = dirty.page = dirty.pending = false;
    dirty.addrs.clear();
    try {
      if (route.view !== "overview") {
        // the list is fetched whole when it is shown again
      } else if (d.all || d.addrs.some((a) => !devices.has(a)) || d.addrs.length > 25) {
        await loadDevices();
      } else {
        for (const a of d.addrs) devices.set(a, await api("GET", `/api/devices/${a}`));
        if (d.addrs.length) renderDevices();
      }
      if (route.view === "device" && (d.all || d.page)) await loadPage();
      if (route.view === "pending" && (d.all || d.pending)) await loadPending();
      if (route.view === "sites" && d.all) await loadSites();
    } catch (e) {
      if (e.status !== 401) console.warn("refresh failed", e);
    } finally {
      flushTimer = null;
      if (dirty.all || dirty.addrs.size || dirty.page || dirty.pending) flushTimer = setTimeout(flush, 150);
    }
  }

  // ---- views ------------------------------------------------------------------------------------
  function parseRoute() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.get("device")) return { view: "device", address: params.get("device").toLowerCase() };
    if (params.has("pending")) return { view: "pending" };
    if (params.has("sites")) return { view: "sites" };
    return { view: "overview" };
  }
  async function show() {
    route = parseRoute();
    const section = { overview: "view-overview", pending: "view-pending", sites: "view-sites", device: "view-device" }[route.view];
    for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== section;
    for (const [id, view] of [["nav-devices", "overview"], ["nav-pending", "pending"], ["nav-sites", "sites"]]) {
      if (view === route.view) $(id).setAttribute("aria-current", "page"); else $(id).removeAttribute("aria-current");
    }
    $("forget").hidden = false;
    document.querySelector(".top nav").hidden = false;
    try {
      if (route.view === "overview") await loadDevices();
      if (route.view === "pending") await loadPending();
      if (route.view === "sites") await loadSites();
      if (route.view === "device") {
        if (page.address !== route.address) {
          Object.assign(page, { address: route.address, device: null, reports: [], commands: [], formsFor: null });
          $("dev-forms").replaceChildren();
        }
        await loadPage();
      }
    } catch (e) {
      if (e.status === 404 && route.view === "device") $("dev-title").textContent = e.detail;
      else if (e.status !== 401) console.warn(e);
    }
  }

  // the device list
  async function loadDevices() {
    const list = await api("GET", "/api/devices");
    devices.clear();
    for (const d of list) devices.set(d.address, d);
    renderDevices();
  }
  function renderDevices() {
    const rows = [...devices.values()].sort((a, b) => a.address.localeCompare(b.address)).map((d) =>
      h("tr", { id: `dev-${d.address}`, "data-address": d.address },
        h("th", { scope: "row" }, h("a", { href: `#device=${d.address}` }, d.address),
          d.name ? h("span", { class: "muted" }, ` ${d.name}`) : null),
        h("td", {}, d.site),
        h("td", { class: "role" }, roleName(roleOf(d))),
        h("td", {}, temperature(d)),
        h("td", { class: "relay" }, relay(d)),
        h("td", {}, power(d)),
        h("td", {}, sg(d)),
        h("td", { class: "availability" }, availability(d)),
        h("td", { title: fullDate(d.last_seen) }, ago(d.last_seen))));
    $("devices").tBodies[0].replaceChildren(...rows);
    $("devices-empty").hidden = rows.length > 0;
  }

  // the pending queue
  async function loadPending() {
    const list = await api("GET", "/api/pending");
    const rows = list.map((c) => h("tr", { "data-id": c.id },
      h("td", {}, c.id),
      h("td", {}, h("a", { href: `#device=${c.device}` }, c.device)),
      h("td", {}, summary(c.kind, c.params)),
      h("td", {}, stateBadge(c.state)),
      h("td", { title: fullDate(c.created_at) }, ago(c.created_at)),
      h("td", {}, c.sends),
      h("td", {}, c.requested_by),
      h("td", {}, c.state === "accepted"
        ? h("button", { type: "button", class: "quiet", "aria-label": `Cancel command ${c.id}`,
                        onclick: () => cancel(c.id) }, "Cancel") : null)));
    $("pending").tBodies[0].replaceChildren(...rows);
    $("pending-empty").hidden = rows.length > 0;
  }
  async function cancel(id) {
    $("pending-error").textContent = "";
    try { await api("POST", `/api/commands/${id}/cancel`); await loadPending(); } catch (e) {
      $("pending-error").textContent = `Command ${id} was not cancelled: ${e.detail}`;
    }
  }

  // price forecasts
  async function loadSites() {
    const sites = await api("GET", "/api/sites");
    const box = $("sites");
    // Keep forms the user may be typing in; add the sites that are new.
    for (const s of sites) {
      if (box.querySelector(`[data-site="${CSS.escape(s.name)}"]`)) continue;
      box.append(siteCard(s));
    }
  }
  function siteCard(s) {
    const id = `site-${s.name.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
    const status = h("p", { class: "status", role: "status" });
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "cmd", "aria-labelledby": `${id}-title` },
      h("label", { for: `${id}-prices` }, "Prices per MWh, one per step (spaces or commas)"),
      h("textarea", { id: `${id}-prices`, name: "prices", rows: 3, required: true }, "82.5 79.1 75 71.3 90 120.4"),
      h("label", { for: `${id}-interval` }, "Step"),
      h("select", { id: `${id}-interval`, name: "interval_s" },
        h("option", { value: 900 }, "15 min"), h("option", { value: 1800 }, "30 min"),
        h("option", { value: 3600, selected: true }, "1 h")),
      h("label", { for: `${id}-start` }, "From (blank: this hour)"),
      h("input", { id: `${id}-start`, name: "start", type: "datetime-local" }),
      h("button", { type: "submit" }, "Send forecast"), status, error);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      status.textContent = error.textContent = "";
      const f = new FormData(form);
      const prices = String(f.get("prices")).split(/[\s,;]+/).filter(Boolean).map(Number);
      const body = { prices, interval_s: Number(f.get("interval_s")) };
      const start = epochOf(f.get("start"));
      if (start !== null) body.start = start;
      try {
        const r = await api("POST", `/api/sites/${encodeURIComponent(s.name)}/prices`, body);
        status.textContent = `Sent ${r.steps} steps to group ${r.group} (${r.frame_bytes} bytes).`;
      } catch (err) { error.textContent = err.detail; }
    });
    return h("div", { class: "card", "data-site": s.name },
      h("h3", { id: `${id}-title` }, `Site ${s.name}`),
      h("p", { class: "muted" }, `group ${s.group_address}, ${s.devices} devices`), form);
  }

  // the device page
  async function loadPage() {
    const a = page.address;
    const [d, reports, commands] = await Promise.all([
      api("GET", `/api/devices/${a}`), api("GET", `/api/devices/${a}/reports?limit=${REPORTS}`),
      api("GET", `/api/devices/${a}/commands?limit=100`)]);
    if (a !== page.address) return; // the user moved on meanwhile
    devices.set(a, d);
    Object.assign(page, { device: d, reports: reports.filter((r) => r.kind !== "capabilities"), commands });
    renderPage();
  }
  function renderPage() {
    const d = page.device;
    if (!d) return;
    const role = roleOf(d);
    $("dev-title").textContent = `Device ${d.address}${d.name ? ` “${d.name}”` : ""} · ${roleName(role)}`;
    renderFacts();
    renderCharts();
    renderCommands();
    $("dev-caps").textContent = d.capabilities ? JSON.stringify(d.capabilities, null, 2) : "not reported yet";
    if (page.formsFor !== (role || "?")) { // rebuilt only when the role changes: typing survives updates
      page.formsFor = role || "?";
      renderForms(role);
    }
  }
  function renderFacts() {
    const d = page.device;
    const s = d.state || {};
    const role = roleOf(d);
    const facts = [
      ["Site", d.site], ["Availability", availability(d)], ["Last seen", `${ago(d.last_seen)} (${clock(d.last_seen)})`],
    ];
    if (role === "thermostat") facts.push(["Temperature", deg(s.temp_c)], ["Target", deg(s.target_c)], ["Heating relay", relay(d)]);
    if (role === "smart_plug") facts.push(["Relay", relay(d)], ["Power", power(d)],
      ["Current", typeof s.current_ma === "number" ? `${s.current_ma} mA` : "—"],
      ["Energy", typeof s.energy_wh === "number" ? `${s.energy_wh} Wh` : "—"]);
    if (role === "heat_pump") facts.push(["Store", deg(s.temp_c)], ["SG Ready", sg(d)],
      ["Blocked today", typeof s.blocked_today_s === "number" ? duration(s.blocked_today_s) : "—"]);
    facts.push(["Demand response", DR_NAMES[s.dr_kind] ?? (s.dr_kind ?? "—")], ["Fault", s.fault ? `code ${s.fault}` : "none"],
      ["Reset cause", d.reset_cause || "—"], ["Firmware", d.firmware || "—"], ["State reported", ago(d.state_at)]);
    $("dev-state").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, v)]));
  }
  function renderCommands() {
    const rows = page.commands.map((c) => h("tr", { "data-id": c.id },
      h("td", {}, c.id),
      h("td", {}, summary(c.kind, c.params)),
      h("td", { class: "state" }, stateBadge(c.state)),
      h("td", {}, c.reason_text || (c.reason ? `code ${c.reason}` : "")),
      h("td", { title: fullDate(c.created_at) }, clock(c.created_at)),
      h("td", { title: fullDate(c.acked_at) }, c.acked_at ? clock(c.acked_at) : ""),
      h("td", {}, c.sends ?? ""),
      h("td", {}, c.requested_by || "")));
    $("dev-commands").tBodies[0].replaceChildren(...rows);
    $("dev-commands-empty").hidden = rows.length > 0;
  }

  // ---- the forms ------------------------------------------------------------------------------
  function renderForms(role) {
    const kinds = KINDS.filter((k) => k.roles === null || (role && k.roles.includes(role)));
    $("dev-forms-note").textContent = role ? "" :
      "This device has not reported its capability record yet: its role's own commands appear after its first wake.";
    $("dev-forms").replaceChildren(...kinds.map((k) => commandForm(k, role)));
  }
  function commandForm(k, role) {
    const id = `cmd-${k.kind}`;
    const fields = k.fields ?? (ROLE_SETTINGS[role] || Object.keys(SETTINGS)).map((n) =>
      // No min/max here on purpose: the device's ranges live in the firmware, and the API
      // answers an out-of-range value with the range.
      ({ name: n, label: SETTINGS[n], type: "number", value: "", step: 1, optional: true, setting: true }));
    const status = h("p", { class: "status", role: "status" });
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "cmd", id, "data-kind": k.kind, "aria-labelledby": `${id}-title` },
      h("h4", { id: `${id}-title` }, k.title),
      k.note ? h("p", { class: "muted" }, k.note) : null,
      fields.map((f) => field(id, f)),
      h("button", { type: "submit" }, k.button || `Send ${k.title.toLowerCase()}`), status, error);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      status.textContent = error.textContent = "";
      const values = Object.fromEntries(new FormData(form));
      let body;
      try {
        body = { kind: k.kind, ...(k.build ? k.build(values) : plainBody(fields, values)) };
      } catch (err) { error.textContent = err.message; return; }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const c = await api("POST", `/api/devices/${page.address}/commands`, body);
        status.textContent = `Accepted as command ${c.id} (${c.frame_bytes} bytes): its state is under Commands.`;
        mark({ page: true, pending: true });
      } catch (err) {
        error.textContent = err.status ? `Refused (${err.status}): ${err.detail}` : err.detail;
      } finally { button.disabled = false; }
    });
    return form;
  }
  function field(formId, f) {
    const id = `${formId}-${f.name}`;
    let input;
    if (f.type === "select") {
      input = h("select", { id, name: f.name },
        f.options.map(([v, text]) => h("option", { value: v, selected: String(f.value) === v }, text)));
    } else if (f.type === "textarea") {
      input = h("textarea", { id, name: f.name, rows: 5, required: true, spellcheck: "false" }, f.value);
    } else {
      input = h("input", { id, name: f.name, type: f.type, value: f.value, min: f.min, max: f.max,
                           step: f.step, required: !f.optional && f.type === "number",
                           inputmode: f.type === "number" ? "decimal" : null });
    }
    return h("div", { class: "field" }, h("label", { for: id }, f.label), input);
  }
  // Numbers from the fields; blank optional ones are left out. Settings gather into one dict.
  function plainBody(fields, values) {
    const body = {};
    const settings = {};
    for (const f of fields) {
      const raw = String(values[f.name] ?? "").trim();
      if (raw === "") continue;
      if (f.setting) settings[f.name] = Number(raw); else body[f.name] = Number(raw);
    }
    if (fields.some((f) => f.setting)) {
      if (!Object.keys(settings).length) throw new Error("Fill in at least one setting.");
      body.settings = settings;
    }
    return body;
  }
  function epochOf(text) {
    if (!text) return null;
    const t = new Date(text).getTime();
    return Number.isNaN(t) ? null : Math.round(t / 1000);
  }
  function lastMonday() {
    const d = new Date();
    d.setHours(0, 0, 0, 0);
    d.setDate(d.getDate() - ((d.getDay() + 6) % 7));
    return Math.round(d.getTime() / 1000);
  }
  function parseProgram(text) {
    const steps = [];
    for (const [i, line] of String(text).split("\n").entries()) {
      if (!line.trim()) continue;
      const m = line.trim().toLowerCase().match(/^([a-z]{3})\w*\s+(\d{1,2}):(\d{2})\s+(-?\d+(?:\.\d+)?)$/);
      const day = m ? DAYS.indexOf(m[1]) : -1;
      if (!m || day < 0 || +m[2] > 23 || +m[3] > 59) {
        throw new Error(`Line ${i + 1}: write it as "mon 06:30 21".`);
      }
      steps.push([day * 86400 + +m[2] * 3600 + +m[3] * 60, Number(m[4])]);
    }
    if (!steps.length) throw new Error("A program needs at least one step.");
    return steps.sort((a, b) => a[0] - b[0]);
  }

  // ---- the charts (inline SVG) ---------------------------------------------------------------
  const CHARTS = {
    thermostat: [{ title: "Temperature", unit: "°C", series: [
      { key: "temp_c", label: "room" }, { key: "target_c", label: "target", step: true }] }],
    smart_plug: [{ title: "Power", unit: "W", floor: 0, series: [{ key: "power_w", label: "power", step: true }] }],
    heat_pump: [
      // left: room for the SG Ready state names, the same on both so their time axes line up
      { title: "Store temperature", unit: "°C", left: 136, series: [{ key: "temp_c", label: "store" }] },
      { title: "SG Ready state", unit: "", min: 1, max: 4, ticks: SG_NAMES, left: 136,
        series: [{ key: "sg_state", label: "SG Ready", step: true }] }],
  };
  function renderCharts() {
    const d = page.device;
    if (!d) return;
    const role = roleOf(d);
    const specs = CHARTS[role] || [{ title: "Power", unit: "W", series: [{ key: "power_w", label: "power" }] }];
    $("dev-charts").replaceChildren(...specs.map((s) => chart(s, page.reports)));
  }
  function chart(spec, reports) {
    const W = 640, H = 170, L = spec.left || 64, R = 12, T = 12, B = 24;
    const series = spec.series.map((s, i) => ({ ...s, i, points: reports
      .filter((r) => typeof (r.body || {})[s.key] === "number").map((r) => [r.t, r.body[s.key]]) }));
    const all = series.flatMap((s) => s.points);
    const label = `${spec.title}: ${all.length ? series.map((s) => {
      const p = s.points.at(-1);
      return p ? `${s.label} ${p[1]}${spec.unit ? ` ${spec.unit}` : ""}` : null;
    }).filter(Boolean).join(", ") + ` (latest of ${all.length} values)` : "no reports yet"}`;
    const figure = h("figure", { class: "chart" }, h("figcaption", {}, spec.title + (spec.unit ? ` (${spec.unit})` : "")));
    if (!all.length) {
      figure.append(h("p", { class: "muted" }, "No reports yet."));
      return figure;
    }
    let t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    if (t1 - t0 < 60) { t0 -= 30; t1 += 30; }
    let y0 = spec.min ?? Math.min(...all.map((p) => p[1])), y1 = spec.max ?? Math.max(...all.map((p) => p[1]));
    if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
    if (spec.min === undefined) { const m = (y1 - y0) * 0.1; y0 -= m; y1 += m; }
    if (spec.floor !== undefined && y0 < spec.floor) { y1 += spec.floor - y0; y0 = spec.floor; } // no negative watts
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    const s = (tag, attrs, text) => {
      const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
      for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
      if (text !== undefined) el.textContent = text;
      return el;
    };
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    svg.append(s("title", {}, label));
    const ticks = spec.ticks ? Object.keys(spec.ticks).map(Number) : [y0, (y0 + y1) / 2, y1];
    for (const v of ticks) {
      svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      const text = spec.ticks ? `${v} ${spec.ticks[v]}` : +v.toFixed(Math.abs(y1 - y0) < 10 ? 1 : 0);
      svg.append(s("text", { x: L - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, String(text)));
    }
    svg.append(s("text", { x: L, y: H - 6, class: "tick" }, clock(t0)));
    svg.append(s("text", { x: W - R, y: H - 6, class: "tick", "text-anchor": "end" }, clock(t1)));
    for (const se of series) {
      const pts = se.points.sort((a, b) => a[0] - b[0]);
      if (!pts.length) continue;
      let dpath = `M${x(pts[0][0]).toFixed(1)},${y(pts[0][1]).toFixed(1)}`;
      for (const [t, v] of pts.slice(1)) {
        dpath += se.step ? `H${x(t).toFixed(1)}V${y(v).toFixed(1)}` : `L${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      }
      if (se.step) dpath += `H${x(Math.max(t1, pts.at(-1)[0])).toFixed(1)}`; // a level holds until now
      svg.append(s("path", { d: dpath, class: `line s${se.i}` }));
      for (const [t, v] of pts.length <= 60 ? pts : [pts.at(-1)]) {
        svg.append(s("circle", { cx: x(t), cy: y(v), r: 3, class: `dot s${se.i}` }));
      }
    }
    figure.append(svg);
    if (series.length > 1) {
      figure.append(h("p", { class: "legend" }, series.map((se) =>
        h("span", {}, h("span", { class: `swatch s${se.i}`, "aria-hidden": "true" }), se.label))));
    }
    return figure;
  }

  // ---- start ----------------------------------------------------------------------------------
  function start() {
    $("login").hidden = true;
    connect();
    show();
  }
  document.addEventListener("DOMContentLoaded", () => {
    takeTokenFromUrl();
    window.addEventListener("hashchange", () => { takeTokenFromUrl(); if (token) show(); });
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      token = $("token-input").value.trim();
      $("token-input").value = "";
      localStorage.setItem(TOKEN_KEY, token);
      start();
    });
    $("forget").addEventListener("click", () => {
      localStorage.removeItem(TOKEN_KEY);
      token = "";
      askToken("Token forgotten: this browser no longer keeps it.", false);
    });
    // Relative times ("12 s ago", "wakes in 3 min") age: refresh what shows them.
    setInterval(() => {
      if (!token || !source) return;
      if (route.view === "overview") renderDevices();
      if (route.view === "device" && page.device) renderFacts();
    }, 5000);
    if (token) start(); else askToken("", false);
  });
})();
