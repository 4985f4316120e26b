// Inline SVG charts: the memory breakdown against the device's memory, and the log-log roofline.

var SVG_NS = "http://www.w3.org/2000/svg";
var PALETTE = ["#3a6ea5", "#d9822b", "#3f8f5a", "#9b4f96", "#c23b3b", "#6b7a8f", "#b8a200", "#2a9d9d"];

function svgEl(tag, attrs, text) {
  var e = document.createElementNS(SVG_NS, tag);
  Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
  if (text !== undefined) e.textContent = text;
  return e;
}

function titled(node, text) { node.appendChild(svgEl("title", {}, text)); return node; }

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function fixed(x) { return Math.round(x * 100) / 100; }

// parts: [{title, value (Number), color}], memory: Number (bytes); draws into <svg id=memory-svg>.
function drawMemory(svg, parts, memory, deviceTitle) {
  clear(svg);
  var W = 600, left = 10, right = 20, width = W - left - right, y = 34, h = 36;
  var total = parts.reduce(function (s, p) { return s + Math.max(0, p.value); }, 0);
  var scale = Math.max(total, memory, 1) * 1.08;
  svg.setAttribute("viewBox", "0 0 " + W + " 110");
  svg.appendChild(svgEl("rect", {x: left, y: y, width: width, height: h, "class": "track"}));
  var x = left;
  parts.forEach(function (p, i) {
    var w = width * Math.max(0, p.value) / scale;
    var r = svgEl("rect", {x: fixed(x), y: y, width: fixed(w), height: h, fill: p.color,
                           "class": "part", "data-part": p.key});
    svg.appendChild(titled(r, p.title + ": " + human(p.value, "B")));
    x += w;
  });
  var mx = fixed(left + width * memory / scale);
  svg.appendChild(titled(svgEl("line", {x1: mx, x2: mx, y1: y - 12, y2: y + h + 12, "class": "limit",
                                        id: "memory-limit"}), "device memory: " + human(memory, "B")));
  svg.appendChild(svgEl("text", {x: mx, y: y - 16, "text-anchor": mx > W / 2 ? "end" : "start",
                                 "class": "label"}, deviceTitle + " memory " + human(memory, "B")));
  svg.appendChild(svgEl("text", {x: left, y: y + h + 28, "class": "label"},
                        "total " + human(total, "B") + " \u2014 " + percent(total, memory) + " of device memory"));
  return {total: total, scale: scale};
}

function percent(a, b) {
  if (!(b > 0)) return "\u2014";
  return a / b < 10 ? (100 * a / b).toPrecision(3) + "%" : human(a / b, "") + "\u00d7";
}

function decades(lo, hi) {
  var out = [];
  for (var e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(Math.pow(10, e));
  return out;
}

function logScale(lo, hi, a, b) {
  var l0 = Math.log10(lo), l1 = Math.log10(hi);
  return function (v) { return fixed(a + (b - a) * (Math.log10(v) - l0) / (l1 - l0)); };
}

// points: [{label, intensity, perf, bound}] (Numbers), peak FLOP/s, bandwidth B/s.
function drawRoofline(svg, points, peak, bandwidth) {
  clear(svg);
  var W = 640, H = 380, m = {l: 86, r: 16, t: 14, b: 46};
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  var ridge = peak / bandwidth;
  var xs = points.map(function (p) { return p.intensity; }).concat([ridge]);
  var x0 = Math.pow(10, Math.floor(Math.log10(Math.min.apply(null, xs) / 2)));
  var x1 = Math.pow(10, Math.ceil(Math.log10(Math.max.apply(null, xs) * 2)));
  var y1 = Math.pow(10, Math.ceil(Math.log10(peak * 1.5)));
  var ys = points.map(function (p) { return p.perf; }).concat([x0 * bandwidth, peak / 1e3]);
  var y0 = Math.pow(10, Math.floor(Math.log10(Math.max(Math.min.apply(null, ys) / 2, y1 / 1e12))));
  var sx = logScale(x0, x1, m.l, W - m.r), sy = logScale(y0, y1, H - m.b, m.t);
  axes(svg, decades(x0, x1), decades(y0, y1), sx, sy, W, H, m);
  var start = Math.max(x0, y0 / bandwidth);
  var roof = [[start, start * bandwidth], [ridge, peak], [x1, peak]].map(function (p) {
    return sx(p[0]) + "," + sy(p[1]);
  }).join(" ");
  svg.appendChild(titled(svgEl("polyline", {points: roof, "class": "roof", id: "roof-line"}),
                         "roofline: ridge point " + plain(ridge) + " FLOP/B"));
  svg.appendChild(svgEl("text", {x: sx(ridge), y: sy(peak) - 8, "text-anchor": "middle", "class": "label"},
                        "ridge " + plain(ridge) + " FLOP/B"));
  points.forEach(function (p, i) {
    var c = svgEl("circle", {cx: sx(p.intensity), cy: sy(p.perf), r: 5, "class": "pt " + p.bound,
                             "data-op": p.index});
    svg.appendChild(titled(c, p.label + ": " + plain(p.intensity) + " FLOP/B, " +
                           human(p.perf, "FLOP/s") + " bound, " + p.bound + "-bound"));
  });
}

function tick(v, unit) { return human(v, unit).replace(/\.0(?=\D|$)/, ""); }

function axes(svg, xt, yt, sx, sy, W, H, m) {
  var g = svgEl("g", {"class": "axes"});
  xt.forEach(function (t) {
    g.appendChild(svgEl("line", {x1: sx(t), x2: sx(t), y1: m.t, y2: H - m.b, "class": "grid"}));
    g.appendChild(svgEl("text", {x: sx(t), y: H - m.b + 16, "text-anchor": "middle"}, tick(t, "")));
  });
  yt.forEach(function (t) {
    g.appendChild(svgEl("line", {x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t), "class": "grid"}));
    g.appendChild(svgEl("text", {x: m.l - 6, y: sy(t) + 4, "text-anchor": "end"}, tick(t, "FLOP/s")));
  });
  g.appendChild(svgEl("text", {x: (m.l + W - m.r) / 2, y: H - 8, "text-anchor": "middle", "class": "axis-title"},
                      "arithmetic intensity (FLOP per byte moved)"));
  svg.appendChild(g);
}
