// The page's controls, formulas, tables and charts, rebuilt from the embedded JSON on every input.

var DATA = JSON.parse(document.getElementById("report-data").textContent);
var STATE = {dims: {}, device: DATA.device};
var SLOTS = [];          // {el, tree | thunk, unit}: every number on the page, re-evaluated together
var LOG_STEPS = 1000;
var RESETS = [];         // one per dimension control: back to the report's value

function h(tag, attrs, children) {
  var e = document.createElement(tag);
  Object.keys(attrs || {}).forEach(function (k) {
    if (k === "text") e.textContent = attrs[k];
    else e.setAttribute(k, String(attrs[k]));
  });
  (children || []).forEach(function (c) { if (c) e.appendChild(c); });
  return e;
}

function tex(source, display) {
  var e = h("span", {"class": display ? "tex display" : "tex", "data-tex": source});
  katex.render(source, e, {displayMode: !!display, throwOnError: false, output: "htmlAndMathml",
                           trust: false, strict: "ignore", maxExpand: 1000});
  return e;
}

function valueSlot(tree, unit, attrs) {
  var e = h("span", Object.assign({"class": "val"}, attrs || {}));
  SLOTS.push({el: e, tree: tree, unit: unit});
  return e;
}

// ---- dimension controls -------------------------------------------------------------------------
function toPos(dim, v) {
  if (dim.scale !== "log") return String(v);
  var l0 = Math.log(dim.min), l1 = Math.log(dim.max);
  return String(Math.round(LOG_STEPS * (Math.log(Number(v)) - l0) / (l1 - l0)));
}

function fromPos(dim, p) {
  if (dim.scale !== "log") return BigInt(p);
  var l0 = Math.log(dim.min), l1 = Math.log(dim.max);
  var v = Math.round(Math.exp(l0 + (l1 - l0) * Number(p) / LOG_STEPS));
  return BigInt(Math.min(dim.max, Math.max(dim.min, v)));
}

function dimControl(dim, i) {
  var id = "dim-" + i, value = BigInt(dim.value);
  STATE.dims[dim.name] = value;
  var log = dim.scale === "log";
  var range = h("input", {type: "range", id: id, "data-dim": dim.name, "class": "range",
                          min: log ? 0 : dim.min, max: log ? LOG_STEPS : dim.max, step: 1});
  var num = h("input", {type: "number", id: id + "-num", "data-dim": dim.name, min: dim.min, max: dim.max,
                        step: 1, inputmode: "numeric", "aria-describedby": id + "-doc"});
  var label = h("label", {"for": id, id: id + "-label"}, [tex(dim.tex, false)]);
  var numLabel = h("label", {"for": id + "-num", "class": "num-label", text: dim.name + " ="});
  var doc = h("span", {"class": "doc", id: id + "-doc", text: dim.doc + (log ? " (log scale; Page Up/Down doubles/halves)" : "")});
  function show(v, except) {
    if (except !== num) num.value = v.toString();
    if (except !== range) range.value = toPos(dim, v);
    range.setAttribute("aria-valuetext", dim.name + " = " + v.toString());
  }
  range.addEventListener("input", function () {
    var v = fromPos(dim, range.value);
    STATE.dims[dim.name] = v; show(v, range); update();
  });
  if (log) {
    range.addEventListener("keydown", function (ev) {
      var v = logKey(dim, STATE.dims[dim.name], ev.key);
      if (v === null) return;
      ev.preventDefault();
      STATE.dims[dim.name] = v; show(v); update();
    });
  }
  num.addEventListener("input", function () {
    var v = parseDim(num.value, dim);
    num.setAttribute("aria-invalid", v === null ? "true" : "false");
    if (v !== null) { STATE.dims[dim.name] = v; show(v, num); update(); }
  });
  num.addEventListener("change", function () { show(STATE.dims[dim.name]); num.setAttribute("aria-invalid", "false"); });
  show(value);
  RESETS.push(function () { STATE.dims[dim.name] = value; show(value); num.setAttribute("aria-invalid", "false"); });
  return h("div", {"class": "dim"}, [label, doc, range, h("span", {"class": "num"}, [numLabel, num])]);
}

// Keys on a log slider move the integer value itself: arrows one slider step but at least 1,
// Page Up/Down double/halve, Home/End go to the bounds. Other keys: null (the browser's default).
function logKey(dim, v, key) {
  var lo = BigInt(dim.min), hi = BigInt(dim.max), p = Number(toPos(dim, v)), n;
  if (key === "ArrowRight" || key === "ArrowUp") { n = fromPos(dim, p + 1); if (n <= v) n = v + 1n; }
  else if (key === "ArrowLeft" || key === "ArrowDown") { n = fromPos(dim, p - 1); if (n >= v) n = v - 1n; }
  else if (key === "PageUp") n = v * 2n;
  else if (key === "PageDown") n = v / 2n;
  else if (key === "Home") n = lo;
  else if (key === "End") n = hi;
  else return null;
  return n < lo ? lo : (n > hi ? hi : n);
}

function parseDim(text, dim) {
  if (!/^\s*\d+\s*$/.test(text)) return null;
  var v = BigInt(text.trim());
  return v >= BigInt(dim.min) && v <= BigInt(dim.max) ? v : null;
}

function deviceControl() {
  var sel = h("select", {id: "device"});
  DATA.devices.forEach(function (d) {
    var o = h("option", {value: d.name, text: d.title ? d.title + " (" + d.name + ")" : d.name});
    if (d.name === STATE.device) o.selected = true;
    sel.appendChild(o);
  });
  sel.addEventListener("change", function () { STATE.device = sel.value; update(); });
  return h("div", {"class": "device"}, [h("label", {"for": "device", text: "Device"}), sel,
                                        h("p", {id: "device-facts", "class": "doc"})]);
}

// ---- formulas and tables --------------------------------------------------------------------------
function metricRow(m, scope, repeatTree) {
  var attrs = {"data-metric": m.key, "data-scope": scope};
  var cells = [h("th", {scope: "row", text: m.title}),
               h("td", {"class": "form"}, [tex(m.latex, true)]),
               h("td", {"class": "num"}, [valueSlot(m.tree, m.unit, attrs)])];
  if (repeatTree) {
    var total = {f: "mul", a: [repeatTree, m.tree]};
    cells.push(h("td", {"class": "num"}, [valueSlot(total, m.unit, Object.assign({"data-total": "1"}, attrs))]));
  }
  return h("tr", {}, cells);
}

function metricTable(metrics, scope, repeatTree, caption) {
  var head = ["quantity", "closed form", repeatTree ? "per instance" : "value"];
  if (repeatTree) head.push("all instances");
  var thead = h("thead", {}, [h("tr", {}, head.map(function (t) { return h("th", {scope: "col", text: t}); }))]);
  var body = h("tbody", {}, metrics.map(function (m) { return metricRow(m, scope, repeatTree); }));
  return h("div", {"class": "scroll"}, [h("table", {"class": "metrics"}, [h("caption", {text: caption}), thead, body])]);
}

function blockSection(b, i) {
  var head = h("h3", {}, [h("code", {text: b.path}), h("span", {text: " \u00d7 "}), tex(b.repeat_latex, false),
                          h("span", {text: " = "}), valueSlot(b.repeat_tree, "", {"data-repeat": b.path})]);
  return h("section", {"class": "block", "data-block": b.path},
           [head, metricTable(b.metrics, "block:" + i, b.repeat_tree, "per instance of " + b.path)]);
}

var OP_COLUMNS = [["flops", "FLOPs", "FLOP"], ["bytes", "bytes moved", "B"], ["params", "parameters", ""]];

// A path that may break after each "/" (and nowhere else).
function pathCode(path) {
  var code = h("code", {});
  path.split("/").forEach(function (part, i, all) {
    code.appendChild(document.createTextNode(part + (i < all.length - 1 ? "/" : "")));
    if (i < all.length - 1) code.appendChild(document.createElement("wbr"));
  });
  return code;
}

function opRow(op, i) {
  var cells = [h("td", {"class": "path"}, [pathCode(op.path)]), h("td", {text: op.op}),
               h("td", {"class": "stmt"}, [h("code", {text: op.statement})])];
  OP_COLUMNS.forEach(function (c) {
    cells.push(h("td", {"class": "num"}, [valueSlot(op[c[0]], c[2], {"data-op": i, "data-col": c[0]})]));
  });
  cells.push(h("td", {"class": "num"}, [h("span", {"class": "val", "data-op": i, "data-col": "intensity"})]));
  cells.push(h("td", {}, [h("span", {"class": "bound", "data-op": i})]));
  return h("tr", {"data-op": i}, cells);
}

function opTable() {
  var cols = ["op path", "op", "statement"].concat(OP_COLUMNS.map(function (c) { return c[1]; }),
                                                    ["FLOP/B", "bound on device"]);
  var thead = h("thead", {}, [h("tr", {}, cols.map(function (t) { return h("th", {scope: "col", text: t}); }))]);
  return h("div", {"class": "scroll"}, [h("table", {"class": "ops"},
    [h("caption", {text: "costs of one instance of each op"}), thead, h("tbody", {}, DATA.ops.map(opRow))])]);
}

// ---- evaluation ---------------------------------------------------------------------------------------
function currentDevice() {
  return DATA.devices.filter(function (d) { return d.name === STATE.device; })[0] || DATA.devices[0];
}

function environment() {
  var env = {};
  Object.keys(STATE.dims).forEach(function (k) { env[k] = rat(STATE.dims[k], 1n); });
  var d = currentDevice();
  if (d) { env.peak = fromDouble(d.peak); env.bandwidth = fromDouble(d.bandwidth); env.memory = fromDouble(d.memory); }
  if (d && d.link !== undefined) env.link = fromDouble(d.link);
  return env;
}

function fill(el, v, unit) {
  el.textContent = human(toNumber(v), unit);
  el.setAttribute("data-exact", exactString(v));
  el.title = exactTitle(v);
}

function safeEval(tree, env) {
  try { return evaluate(tree, env); } catch (err) { return {x: NaN, error: String(err.message)}; }
}

function update() {
  var env = environment(), dev = currentDevice();
  SLOTS.forEach(function (s) { fill(s.el, safeEval(s.tree, env), s.unit); });
  if (dev) {
    document.getElementById("device-facts").textContent = "peak " + human(dev.peak, "FLOP/s") + ", bandwidth " +
      human(dev.bandwidth, "B/s") + ", memory " + human(dev.memory, "B");
  }
  var points = updateOps(env, dev);
  if (DATA.memory && dev) drawMemoryParts(env, dev);
  if (DATA.roofline && dev) drawRoofline(document.getElementById("roofline-svg"), points, dev.peak, dev.bandwidth);
  document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
}

function updateOps(env, dev) {
  var points = [];
  DATA.ops.forEach(function (op, i) {
    var f = toNumber(safeEval(op.flops, env)), b = toNumber(safeEval(op.bytes, env));
    var cell = document.querySelector('.val[data-op="' + i + '"][data-col="intensity"]');
    var tag = document.querySelector('.bound[data-op="' + i + '"]');
    if (!(f > 0 && b > 0) || !dev) { cell.textContent = "\u2014"; tag.textContent = "\u2014"; return; }
    var I = f / b, bound = I * dev.bandwidth >= dev.peak ? "compute" : "memory";
    cell.textContent = plain(I);
    tag.textContent = bound;
    tag.className = "bound " + bound;
    points.push({index: i, label: op.path, intensity: I, perf: Math.min(dev.peak, I * dev.bandwidth), bound: bound});
  });
  return points;
}

function drawMemoryParts(env, dev) {
  var parts = DATA.memory.parts.map(function (p, i) {
    return {key: p.key, title: p.title, value: toNumber(safeEval(p.tree, env)), color: PALETTE[i % PALETTE.length]};
  });
  var res = drawMemory(document.getElementById("memory-svg"), parts, dev.memory, dev.title || dev.name);
  var status = document.getElementById("memory-status");
  status.textContent = res.total > dev.memory ? "does not fit: exceeds device memory by " +
    human(res.total - dev.memory, "B") : "fits, " + human(dev.memory - res.total, "B") + " to spare";
  status.className = res.total > dev.memory ? "over" : "ok";
}

// ---- page ---------------------------------------------------------------------------------------------
function legend() {
  return h("ul", {"class": "legend"}, DATA.memory.parts.map(function (p, i) {
    return h("li", {}, [h("span", {"class": "swatch", style: "background:" + PALETTE[i % PALETTE.length]}),
                        h("span", {text: p.title + " "}), valueSlot(p.tree, "B", {"data-part": p.key})]);
  }));
}

function build() {
  var controls = document.getElementById("controls");
  controls.appendChild(h("h2", {text: "Inputs"}));
  if (DATA.devices.length) controls.appendChild(deviceControl());
  controls.appendChild(h("fieldset", {}, [h("legend", {text: "Dimensions"})].concat(DATA.dims.map(dimControl))));
  var reset = h("button", {type: "button", id: "reset", text: "Reset to defaults"});
  reset.addEventListener("click", function () {
    RESETS.forEach(function (r) { r(); });
    STATE.device = DATA.device;
    var sel = document.getElementById("device");
    if (sel) sel.value = DATA.device;
    update();
  });
  controls.appendChild(reset);
  document.getElementById("totals").appendChild(metricTable(DATA.metrics, "model", null, "whole model"));
  if (DATA.blocks.length) {
    var blocks = document.getElementById("blocks");
    DATA.blocks.forEach(function (b, i) { blocks.appendChild(blockSection(b, i)); });
  }
  if (DATA.ops.length) document.getElementById("ops").appendChild(opTable());
  if (DATA.memory) document.getElementById("memory-legend").appendChild(legend());
  update();
}

build();
window.symcostReport = Object.freeze({
  evaluate: function (tree, env) {
    var e = {};
    Object.keys(env).forEach(function (k) { e[k] = parseNum(String(env[k])); });
    return exactString(evaluate(tree, e));
  }
});
document.body.setAttribute("data-ready", "1");
