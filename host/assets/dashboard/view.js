// Renders the admin API's answers into the page.
//
// Everything that comes from the API (names, routes, errors, sources)
// goes in as textContent or a data-* attribute, never as markup. Rows are
// kept per service and per subscription and only their changed cells are
// rewritten, so a poll never replaces a button under the pointer.

/** The first 12 characters of a version hash, as the CLI prints it. */
export function short(version) {
  return version ? version.slice(0, 12) : "—";
}

/** A new element with attributes and text. */
function el(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** A table cell holding `child`. */
function cellWith(child, attributes = {}) {
  const cell = el("td", attributes);
  cell.append(child);
  return cell;
}

/** Sets `node`'s text, touching the DOM only when it changed. */
function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) {
    node.textContent = value;
  }
}

/** Keeps `rows` (a Map key → row) in `tbody` in the order of `keys`. */
function arrange(tbody, rows, keys) {
  for (const [key, row] of rows) {
    if (!keys.includes(key)) {
      row.remove();
      rows.delete(key);
    }
  }
  keys.forEach((key, index) => {
    const row = rows.get(key);
    if (tbody.children[index] !== row) {
      tbody.insertBefore(row, tbody.children[index] || null);
    }
  });
}

function rate(perSecond) {
  return `${perSecond.toFixed(perSecond >= 10 ? 0 : 1)}/s`;
}

function percent(share) {
  return `${(share * 100).toFixed(share > 0 && share < 0.1 ? 1 : 0)}%`;
}

function millis(ms) {
  return ms === null || ms === undefined ? "—" : `${ms.toFixed(ms >= 10 ? 0 : 1)} ms`;
}

function when(ms) {
  return new Date(ms).toLocaleString();
}

const serviceRows = new Map();
const subscriptionRows = new Map();
const histories = new Map();

/** One service's row, made on first sight. */
function serviceRow(name, actions) {
  let row = serviceRows.get(name);
  if (row) {
    return row;
  }
  row = el("tr", { "data-service": name });
  const head = el("th", { scope: "row" });
  head.append(el("span", { "data-testid": "name" }, name));
  head.append(el("span", { "data-testid": "service-error", class: "error" }));
  row.append(head);
  const state = el("span", { "data-testid": "state", class: "state" });
  row.append(cellWith(state));
  row.append(cellWith(el("code", { "data-testid": "version" })));
  row.append(el("td", { "data-testid": "routes", class: "routes" }));
  for (const id of ["requests-total", "requests-per-second", "error-rate", "p95-ms"]) {
    row.append(el("td", { "data-testid": id, class: "number" }));
  }
  const button = el("button", { type: "button", "data-testid": "rollback" }, "Roll back");
  button.addEventListener("click", () =>
    actions.rollback({ service: name, expected: button.dataset.current, button }));
  row.append(cellWith(button));
  serviceRows.set(name, row);
  return row;
}

/** The services table. */
function renderServices(services, stats, actions) {
  const tbody = document.querySelector("#services tbody");
  for (const service of services) {
    const row = serviceRow(service.name, actions);
    const cell = (id) => row.querySelector(`[data-testid="${id}"]`);
    const figures = stats[service.name] || {
      requests_total: 0, requests_per_second: 0, error_rate: 0, p95_ms: null,
    };
    setText(cell("service-error"), service.error || "");
    const state = cell("state");
    setText(state, service.state);
    state.dataset.state = service.state;
    const version = cell("version");
    setText(version, short(service.version));
    version.title = service.version || "no version";
    version.dataset.version = service.version || "";
    const routes = service.routes.length ? service.routes.join("\n") : "(events only)";
    setText(cell("routes"), routes);
    setText(cell("requests-total"), figures.requests_total);
    setText(cell("requests-per-second"), rate(figures.requests_per_second));
    setText(cell("error-rate"), percent(figures.error_rate));
    setText(cell("p95-ms"), millis(figures.p95_ms));
    const button = cell("rollback");
    button.dataset.current = service.version || "";
    button.disabled = !service.version || service.versions.length < 2;
    button.title = button.disabled
      ? "no earlier version is kept"
      : `back to the version ${short(service.version)} replaced`;
  }
  arrange(tbody, serviceRows, services.map((s) => s.name));
}

/** The subscriptions table, with a replay button per row. */
function renderSubscriptions(subscriptions, actions) {
  const tbody = document.querySelector("#subscriptions tbody");
  const keys = [];
  for (const s of subscriptions) {
    const key = `${s.subscriber}\u0000${s.topic}`;
    keys.push(key);
    let row = subscriptionRows.get(key);
    if (!row) {
      row = el("tr", { "data-subscriber": s.subscriber, "data-topic": s.topic });
      row.append(el("th", { scope: "row", "data-testid": "subscriber" }, s.subscriber));
      row.append(el("td", { "data-testid": "topic" }, s.topic));
      for (const id of ["backlog", "delivered-through", "published-through", "attempts"]) {
        row.append(el("td", { "data-testid": id, class: "number" }));
      }
      row.append(el("td", { "data-testid": "last-error", class: "error" }));
      row.append(el("td", { "data-testid": "dead-letters", class: "number" }));
      const button = el("button", { type: "button", "data-testid": "replay" }, "Replay");
      button.addEventListener("click", () =>
        actions.replay({ subscriber: s.subscriber, topic: s.topic, button }));
      row.append(cellWith(button));
      subscriptionRows.set(key, row);
    }
    const cell = (id) => row.querySelector(`[data-testid="${id}"]`);
    setText(cell("backlog"), s.backlog);
    setText(cell("delivered-through"), s.delivered_through);
    setText(cell("published-through"), s.published_through);
    setText(cell("attempts"), s.attempts);
    setText(cell("last-error"), s.last_error || "");
    setText(cell("dead-letters"), s.dead_letters);
    row.classList.toggle("has-dead-letters", s.dead_letters > 0);
    const button = cell("replay");
    button.disabled = s.dead_letters === 0;
    button.title = button.disabled
      ? "no dead letters"
      : `deliver ${s.subscriber}'s ${s.dead_letters} dead letter(s) of ${s.topic} again`;
  }
  arrange(tbody, subscriptionRows, keys);
  document.getElementById("no-subscriptions").hidden = subscriptions.length > 0;
}

/** The dead letters, newest last; not interactive, so simply rebuilt. */
function renderDeadLetters(letters) {
  const shown = letters.slice(0, 200);
  const rows = shown.map((d) => {
    const row = el("tr", { "data-subscriber": d.subscriber, "data-seq": String(d.seq) });
    row.append(el("td", {}, d.subscriber));
    row.append(el("td", {}, d.topic));
    row.append(el("td", { class: "number" }, String(d.seq)));
    row.append(el("td", {}, d.event && d.event.id ? d.event.id : ""));
    row.append(el("td", { class: "number" }, String(d.attempts)));
    row.append(el("td", { class: "error" }, d.error));
    row.append(el("td", {}, when(d.dead_at_ms)));
    return row;
  });
  document.querySelector("#dead-letters tbody").replaceChildren(...rows);
  document.getElementById("dead-letters-section").hidden = letters.length === 0;
}

/** One service's kept versions, newest deploy first. */
function historyList(service, actions) {
  const list = el("ol", { class: "versions" });
  const currentIndex = service.versions.findIndex((v) => v.current);
  service.versions.forEach((v, index) => {
    const item = el("li", { "data-version": v.version, "data-current": String(v.current) });
    item.append(el("code", { title: v.version }, short(v.version)));
    item.append(el("span", { class: "source" }, v.source));
    item.append(el("time", { datetime: new Date(v.deployed_at_ms).toISOString() },
      when(v.deployed_at_ms)));
    if (v.current) {
      item.append(el("strong", { class: "current", "data-testid": "current" }, "serving"));
    } else {
      const label = currentIndex >= 0 && index < currentIndex ? "Roll forward to this" : "Roll back to this";
      const button = el("button", { type: "button", "data-testid": "rollback-to" }, label);
      button.addEventListener("click", () =>
        actions.rollback({ service: service.name, expected: service.version, to: v.version, button }));
      item.append(button);
    }
    list.append(item);
  });
  return list;
}

/** The deploy history, one block per service, rebuilt when it changes. */
function renderHistory(services, actions) {
  const container = document.getElementById("history");
  const names = services.map((s) => s.name);
  for (const [name, block] of histories) {
    if (!names.includes(name)) {
      block.remove();
      histories.delete(name);
    }
  }
  services.forEach((service, index) => {
    let block = histories.get(service.name);
    if (!block) {
      block = el("section", { "data-history": service.name, class: "history" });
      block.append(el("h3", {}, service.name));
      histories.set(service.name, block);
    }
    const signature = JSON.stringify([service.version, service.versions]);
    if (block.dataset.signature !== signature) {
      block.dataset.signature = signature;
      block.querySelector("ol")?.remove();
      block.append(historyList(service, actions));
    }
    if (container.children[index] !== block) {
      container.insertBefore(block, container.children[index] || null);
    }
  });
}

/** The whole page from one poll's answers. */
export function render(data, actions) {
  renderServices(data.services, data.stats, actions);
  renderSubscriptions(data.subscriptions, actions);
  renderDeadLetters(data.deadLetters);
  renderHistory(data.services, actions);
}

/** The line at the top: live, or why not. */
export function connection(state, text) {
  const node = document.getElementById("connection");
  node.dataset.state = state;
  setText(node, text);
}

/** The outcome of the last click. */
export function actionStatus(state, text) {
  const node = document.getElementById("action-status");
  node.dataset.state = state;
  setText(node, text);
}
