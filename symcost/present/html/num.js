// Exact evaluation of expression trees, and number formatting (part of the report page's one script).
//
// Exactness rule: a value is either EXACT, {n: BigInt, d: BigInt} with d > 0 and gcd(n, d) = 1, or
// INEXACT, {x: Number}. Tree numbers ("12", "-3/4"), dimension values (integers, as BigInt) and device
// figures (finite doubles, each an exact dyadic rational) all enter as exact values. add, mul, integer
// powers, max, min, floor and ceiling keep exact operands exact, so any metric whose true value is an
// integer is shown exactly at any size (above 2**53 too), and quotients such as kv/a or flops/peak
// are exact fractions. Only a non-integer exponent, or an integer power whose result would exceed
// MAX_BITS bits, turns that subtree (and whatever it flows into) into IEEE doubles; such a value is
// marked inexact: its data-exact string starts with "~". Numbers are converted to doubles only for
// display and drawing.

var MAX_BITS = 1 << 20;

function gcd(a, b) {
  if (a < 0n) a = -a;
  if (b < 0n) b = -b;
  while (b) { var t = a % b; a = b; b = t; }
  return a;
}

function rat(n, d) {
  if (d === 0n) return {x: n === 0n ? NaN : (n > 0n ? Infinity : -Infinity)};
  if (d < 0n) { n = -n; d = -d; }
  var g = gcd(n, d);
  return g > 1n ? {n: n / g, d: d / g} : {n: n, d: d};
}

function isExact(v) { return v.x === undefined; }

function fromDouble(x) {
  if (!isFinite(x)) return {x: x};
  var k = 0;
  while (!Number.isInteger(x)) { x *= 2; k++; }   // exact: doubling a double never rounds here
  return rat(BigInt(x), 1n << BigInt(k));
}

function parseNum(text) {
  var m = /^(-?\d+)(?:\/(\d+))?$/.exec(text);
  if (!m) throw new Error("bad number " + JSON.stringify(text));
  return rat(BigInt(m[1]), m[2] ? BigInt(m[2]) : 1n);
}

function bitLength(n) { return n < 0n ? (-n).toString(2).length : n.toString(2).length; }

function toNumber(v) {
  if (!isExact(v)) return v.x;
  var nb = bitLength(v.n), db = bitLength(v.d);
  if (nb < 1000 && db < 1000) return Number(v.n) / Number(v.d);
  var e = nb - db - 64;                  // scale the quotient to ~64 significant bits
  var q = e >= 0 ? v.n / (v.d << BigInt(e)) : (v.n << BigInt(-e)) / v.d;
  return Number(q) * Math.pow(2, e);
}

function add(a, b) {
  if (isExact(a) && isExact(b)) return rat(a.n * b.d + b.n * a.d, a.d * b.d);
  return {x: toNumber(a) + toNumber(b)};
}

function mul(a, b) {
  if (isExact(a) && isExact(b)) return rat(a.n * b.n, a.d * b.d);
  return {x: toNumber(a) * toNumber(b)};
}

function power(b, e) {
  if (isExact(b) && isExact(e) && e.d === 1n) {
    var k = e.n < 0n ? -e.n : e.n;
    var bits = BigInt(Math.max(bitLength(b.n), bitLength(b.d)));
    if (k * bits <= BigInt(MAX_BITS)) {
      var r = rat(b.n ** k, b.d ** k);
      return e.n < 0n ? rat(r.d, r.n) : r;
    }
  }
  return {x: Math.pow(toNumber(b), toNumber(e))};
}

function compare(a, b) {
  if (isExact(a) && isExact(b)) {
    var l = a.n * b.d, r = b.n * a.d;
    return l < r ? -1 : (l > r ? 1 : 0);
  }
  var x = toNumber(a), y = toNumber(b);
  return x < y ? -1 : (x > y ? 1 : 0);
}

function floorOf(v) {
  if (!isExact(v)) return {x: Math.floor(v.x)};
  var q = v.n / v.d;                       // BigInt division truncates toward zero
  if (v.n < 0n && q * v.d !== v.n) q -= 1n;
  return rat(q, 1n);
}

function neg(v) { return isExact(v) ? rat(-v.n, v.d) : {x: -v.x}; }

var REDUCE = {
  add: add, mul: mul,
  max: function (a, b) { return compare(a, b) >= 0 ? a : b; },
  min: function (a, b) { return compare(a, b) <= 0 ? a : b; }
};

// Evaluate a tree under env (symbol name -> exact value); unbound symbols and unknown ops throw.
function evaluate(node, env) {
  if (node.n !== undefined) return parseNum(node.n);
  if (node.s !== undefined) {
    if (!Object.prototype.hasOwnProperty.call(env, node.s)) throw new Error("unbound symbol " + node.s);
    return env[node.s];
  }
  var args = node.a.map(function (c) { return evaluate(c, env); });
  if (REDUCE.hasOwnProperty(node.f)) return args.reduce(REDUCE[node.f]);
  if (node.f === "pow") return power(args[0], args[1]);
  if (node.f === "floor") return floorOf(args[0]);
  if (node.f === "ceiling") return neg(floorOf(neg(args[0])));
  throw new Error("unknown operation " + node.f);
}

// "123" (an exact integer), "-7/2" (an exact fraction) or "~1.5e+300" (a double).
function exactString(v) {
  if (!isExact(v)) return "~" + String(v.x);
  return v.d === 1n ? v.n.toString() : v.n.toString() + "/" + v.d.toString();
}

function groupDigits(s) {
  var sign = s[0] === "-" ? "-" : "", body = sign ? s.slice(1) : s;
  return sign + body.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// Hover text: the exact integer with thousands separators, a fraction with its decimal, or a double.
function exactTitle(v) {
  if (!isExact(v)) return "\u2248 " + String(v.x) + " (floating point)";
  if (v.d === 1n) return groupDigits(v.n.toString()) + " (exact)";
  return groupDigits(v.n.toString()) + "/" + groupDigits(v.d.toString()) +
    " \u2248 " + toNumber(v).toPrecision(6) + " (exact fraction)";
}

var COUNT = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
var SI = [[1e18, "E"], [1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
var SMALL = [[1, ""], [1e-3, "m"], [1e-6, "\u00b5"], [1e-9, "n"], [1e-12, "p"]];

function plain(x) { return String(Number(x.toPrecision(4))); }

// Readable SI text: counts as 6.7B, bytes as 13.5 GB (decimal), FLOP as 1.6 TFLOP, times as 12.3 ms.
function human(x, unit) {
  if (!isFinite(x)) return String(x);
  var a = Math.abs(x), table = unit === "" ? COUNT : SI, sep = unit === "" ? "" : " ";
  if (a >= 1e3 * table[0][0]) return x.toExponential(2) + sep + unit;
  for (var i = 0; i < table.length; i++) {
    if (a >= table[i][0]) return (x / table[i][0]).toFixed(1) + sep + table[i][1] + unit;
  }
  if (unit !== "" && a > 0 && a < 1) {
    for (var j = 1; j < SMALL.length; j++) {
      if (a >= SMALL[j][0]) return plain(x / SMALL[j][0]) + " " + SMALL[j][1] + unit;
    }
    return x.toExponential(2) + " " + unit;
  }
  return plain(x) + (unit ? " " + unit : "");
}
