// The dashboard: asks for the admin token once per tab (kept in
// sessionStorage), then polls the admin API and renders what it says.
// Rollback and replay buttons call the API and poll again at once.

import * as api from "./api.js";
import * as view from "./view.js";

/** Time between polls while the tab is visible. */
const POLL_MS = 1500;

const poll = {
  timer: null,
  running: false,
  // A poll was asked for while one ran: run another right after it.
  again: false,
};

function showSignIn(message) {
  stopPolling();
  document.getElementById("board").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("sign-in").hidden = false;
  const error = document.getElementById("token-error");
  error.textContent = message || "";
  error.hidden = !message;
  view.connection("signed-out", "not signed in");
  const input = document.getElementById("token-input");
  input.value = "";
  input.focus();
}

function showBoard() {
  document.getElementById("sign-in").hidden = true;
  document.getElementById("board").hidden = false;
  document.getElementById("sign-out").hidden = false;
  view.connection("connecting", "connecting…");
  refresh();
}

function stopPolling() {
  clearTimeout(poll.timer);
  poll.timer = null;
}

function schedule() {
  stopPolling();
  if (api.token()) {
    poll.timer = setTimeout(refresh, POLL_MS);
  }
}

/** One poll; a refused token asks for it again. */
async function refresh() {
  if (poll.running) {
    poll.again = true;
    return;
  }
  if (!api.token()) {
    return;
  }
  if (document.visibilityState === "hidden") {
    schedule();
    return;
  }
  poll.running = true;
  try {
    const data = await api.load();
    view.render(data, actions);
    view.connection("live", `live · updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    if (error instanceof api.Unauthorized) {
      api.forgetToken();
      poll.running = false;
      showSignIn("The host refused that token. Enter the admin token again.");
      return;
    }
    view.connection("down", `cannot load from the host: ${error.message}`);
  }
  poll.running = false;
  if (poll.again) {
    poll.again = false;
    refresh();
  } else {
    schedule();
  }
}

/** Runs one button's call, says how it went, and polls at once. */
async function act(button, describe, call) {
  if (button) {
    button.disabled = true;
  }
  view.actionStatus("busy", `${describe}…`);
  try {
    const outcome = await call();
    view.actionStatus("ok", outcome);
  } catch (error) {
    if (error instanceof api.Unauthorized) {
      api.forgetToken();
      showSignIn("The host refused that token. Enter the admin token again.");
      return;
    }
    view.actionStatus("failed", `${describe} failed: ${error.message}`);
  }
  if (button) {
    // The next poll disables it again if it no longer applies.
    button.disabled = false;
  }
  refresh();
}

const actions = {
  /** Back to the version `expected` replaced, or to `to`. */
  rollback({ service, expected, to, button }) {
    const target = to ? `version ${view.short(to)}` : "the version it replaced";
    const question = `Switch ${service} from ${view.short(expected)} to ${target}?`;
    if (!window.confirm(question)) {
      return;
    }
    act(button, `Switching ${service} to ${target}`, async () => {
      const outcome = await api.rollback(service, { to, expected });
      return outcome.changed
        ? `${outcome.service} now runs ${view.short(outcome.version)} (was ${view.short(outcome.previous)})`
        : `${outcome.service} already ran ${view.short(outcome.version)}`;
    });
  },

  /** Delivers a subscriber's dead letters of a topic again. */
  replay({ subscriber, topic, button }) {
    act(button, `Replaying ${subscriber}'s dead letters of ${topic}`, async () => {
      const outcome = await api.replay(subscriber, topic);
      return `${outcome.replayed} dead letter(s) of ${topic} queued again for ${subscriber}`;
    });
  },
};

function start() {
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (!api.isSendable(value)) {
      showSignIn("A token is printable ASCII without spaces.");
      return;
    }
    api.keepToken(value);
    showBoard();
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    api.forgetToken();
    showSignIn();
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && api.token()) {
      refresh();
    }
  });
  if (api.token()) {
    showBoard();
  } else {
    showSignIn();
  }
}

start();
