// The rayfit dashboard: the runs and their states, live charts of the selected run from its
// WebSocket, pause/resume/cancel and a submit form. Its state is window.rayfit (read by tests).
"use strict";

const CHARTS = {
  loss: { title: "loss", series: ["train_loss", "val_loss"] },
  accuracy: { title: "accuracy", series: ["train_accuracy", "val_accuracy"] },
  lr: { title: "learning rate", series: ["learning_rate"] },
  system: { title: "system use (%)", series: ["cpu_percent", "memory_percent", "gpu_utilization"] },
};
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const FINAL = ["completed", "failed", "cancelled"];

const state = (window.rayfit = {
  runs: [], selected: null, runState: null, messages: [], lastSeq: 0,
  points: { loss: 0, accuracy: 0, lr: 0, system: 0 }, socket: null, error: null,
});

// A token in the address's fragment (#token=...) is kept for this tab and never sent in a URL.
const fragment = new URLSearchParams(location.hash.slice(1));
if (fragment.get("token")) {
  sessionStorage.setItem("rayfit-token", fragment.get("token"));
  history.replaceState(null, "", location.pathname);
}
const token = () => sessionStorage.getItem("rayfit-token");

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (token()) headers.authorization = "Bearer " + token();
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : body });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${data.detail}`);
  return data;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

let refreshes = 0;  // an answer that comes back after a newer request's is dropped

async function refreshRuns() {
  const ticket = ++refreshes;
  try {
    const runs = await api("GET", "/api/v1/runs");
    if (ticket !== refreshes) return;
    state.runs = runs;
    document.getElementById("status").textContent = `${state.runs.length} run(s)`;
  } catch (error) {
    document.getElementById("status").textContent = error.message;
    return;
  }
  const body = document.querySelector("#runs tbody");
  body.replaceChildren(...state.runs.slice().reverse().map((run) => {
    const row = el("tr");
    row.dataset.taskId = run.task_id;
    if (run.task_id === state.selected) row.classList.add("selected");
    row.append(el("td", run.name), el("td", run.state, "state-" + run.state), el("td", `${run.epoch}/${run.epochs}`));
    row.addEventListener("click", () => select(run.task_id));
    return row;
  }));
  const current = state.runs.find((run) => run.task_id === state.selected);
  if (current) showState(current.state, current.reason);
}

// --- charts
let plots = {};
let series = {};

function makeCharts() {
  for (const plot of Object.values(plots)) plot.destroy();
  plots = {};
  series = {};
  for (const [key, chart] of Object.entries(CHARTS)) {
    series[key] = [[], ...chart.series.map(() => [])];
    const target = document.getElementById("chart-" + key);
    plots[key] = new uPlot({
      title: chart.title, width: Math.max(400, target.clientWidth || 400), height: 220,
      scales: { x: { time: false } },
      axes: [{}, { size: 60, values: (u, ticks) => ticks.map((v) => +v.toPrecision(3)) }],
      series: [{ label: "epoch" }, ...chart.series.map((name, i) => ({ label: name, stroke: COLOURS[i], width: 2 }))],
    }, series[key], target);
    state.points[key] = 0;
  }
}

function addEpoch(message) {
  const figures = { ...message.metrics, ...(message.system || {}) };
  for (const [key, chart] of Object.entries(CHARTS)) {
    const data = series[key];
    const at = data[0].indexOf(message.epoch);  // a resumed run may send an epoch again
    const index = at >= 0 ? at : data[0].length;
    data[0][index] = message.epoch;
    chart.series.forEach((name, i) => { data[i + 1][index] = figures[name] ?? null; });
    plots[key].setData(data);
    state.points[key] = data[0].length;
  }
}

// --- the selected run
function select(taskId) {
  if (state.socket) state.socket.close();
  Object.assign(state, { selected: taskId, messages: [], lastSeq: 0, runState: null });
  makeCharts();
  const run = state.runs.find((r) => r.task_id === taskId);
  document.getElementById("run-title").textContent = run ? run.name : taskId;
  document.querySelectorAll("#runs tbody tr").forEach((row) => row.classList.toggle("selected", row.dataset.taskId === taskId));
  connect(taskId);
}

function connect(taskId) {
  const query = new URLSearchParams({ since: String(state.lastSeq) });
  if (token()) query.set("token", token());
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/training/${taskId}?${query}`);
  state.socket = socket;
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.task_id !== state.selected || message.seq <= state.lastSeq) return;
    state.lastSeq = message.seq;
    state.messages.push(message);
    if (message.type === "epoch_progress") addEpoch(message);
    if (message.type === "state") { showState(message.state, message.reason); refreshRuns(); }
  };
  // A dropped connection comes back where it left off (since=lastSeq) while the run is not final.
  socket.onclose = () => {
    if (state.socket === socket && !FINAL.includes(state.runState)) setTimeout(() => state.socket === socket && connect(taskId), 1000);
  };
}

function showState(runState, reason) {
  state.runState = runState;
  document.getElementById("run-state").textContent = runState + (reason ? ` (${reason})` : "");
  document.getElementById("run-state").className = "state-" + runState;
  document.getElementById("pause-button").disabled = !["pending", "running"].includes(runState);
  document.getElementById("resume-button").disabled = !["paused", "failed"].includes(runState);
  document.getElementById("cancel-button").disabled = !["pending", "running", "pausing", "paused"].includes(runState);
}

async function act(action) {
  const box = document.getElementById("action-error");
  box.textContent = "";
  try {
    const run = await api("POST", `/training/${action}/${state.selected}`);
    showState(run.state, run.reason);
  } catch (error) {
    box.textContent = state.error = error.message;
  }
}

for (const action of ["pause", "resume", "cancel"]) {
  document.getElementById(action + "-button").addEventListener("click", () => act(action));
}

document.getElementById("submit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const box = document.getElementById("submit-error");
  box.textContent = "";
  const kind = document.getElementById("submit-kind").value;
  const path = kind === "seed" ? "/api/v1/algorithm/epoch-train" : "/api/v1/runs";
  try {
    JSON.parse(document.getElementById("submit-body").value);
  } catch (error) {
    box.textContent = state.error = "not valid JSON: " + error.message;
    return;
  }
  try {
    const run = await api("POST", path, document.getElementById("submit-body").value);
    await refreshRuns();
    select(run.task_id);
  } catch (error) {
    box.textContent = state.error = error.message;
  }
});

makeCharts();
refreshRuns();
setInterval(refreshRuns, 2000);
