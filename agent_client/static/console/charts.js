// charts.js: the wallboard's charts as inline SVG, drawn from the API's 15-minute intervals.
//
//   barsChart(intervals, [{key: "offered", label, cls}, ...], {title}) -> <svg>
//   linesChart(intervals, [{key: "service_level", label, cls}, ...], {title, max: 1}) -> <svg>
//
// `intervals` is GET /api/stats/queues/{queue}/intervals's `intervals` (start, end, figures).
// Only the intervals with calls or staff are drawn on a time axis from the first to the last
// (at least four hours, so an early morning is not stretched across the chart).

const NS = "http://www.w3.org/2000/svg";
const W = 640;
const H = 220;
const PAD = { l: 44, r: 12, t: 14, b: 30 };

function node(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function frame(title) {
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, preserveAspectRatio: "xMidYMid meet" });
  svg.append(node("title", {}, title));
  return svg;
}

function window_(intervals) {
  const used = intervals.filter((i) => i.offered > 0 || i.staffed_seconds > 0);
  const list = used.length ? used : intervals.slice(-1);
  if (!list.length) return null;
  const t0 = Date.parse(list[0].start);
  let t1 = Date.parse(list[list.length - 1].end);
  t1 = Math.max(t1, t0 + 4 * 3600e3);
  return { t0, t1, list: intervals.filter((i) => Date.parse(i.start) >= t0 && Date.parse(i.end) <= t1) };
}

function axes(svg, t0, t1, max, fmt) {
  const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.append(node("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(node("text", { x: PAD.l - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v)));
  }
  const hour = 3600e3;
  const step = (t1 - t0) > 12 * hour ? 3 * hour : (t1 - t0) > 6 * hour ? 2 * hour : hour;
  for (let t = Math.ceil(t0 / hour) * hour; t <= t1; t += step) {
    const d = new Date(t);
    const label = String(d.getHours()).padStart(2, "0") + ":00";
    svg.append(node("text", { x: x(t), y: H - 10, class: "tick", "text-anchor": "middle" }, label));
  }
  return { x, y };
}

function legend(svg, series) {
  let lx = PAD.l + 4;
  for (const s of series) {
    svg.append(node("rect", { x: lx, y: 2, width: 10, height: 10, class: s.cls }));
    const text = node("text", { x: lx + 14, y: 11, class: "legend" }, s.label);
    svg.append(text);
    lx += 24 + s.label.length * 7.5;
  }
}

/** Side-by-side bars per interval, one per series (counts). */
export function barsChart(intervals, series, { title }) {
  const svg = frame(title);
  const w = window_(intervals);
  if (!w) return svg;
  let max = 1;
  for (const i of w.list) for (const s of series) max = Math.max(max, i[s.key] || 0);
  max = Math.ceil(max / 4) * 4;
  const { x, y } = axes(svg, w.t0, w.t1, max, (v) => String(Math.round(v)));
  const slot = x(w.t0 + 15 * 60e3) - x(w.t0);
  const bw = Math.max(1, (slot * 0.8) / series.length);
  for (const i of w.list) {
    const left = x(Date.parse(i.start)) + slot * 0.1;
    series.forEach((s, k) => {
      const v = i[s.key] || 0;
      if (!v) return;
      const r = node("rect", { x: left + k * bw, y: y(v), width: bw, height: y(0) - y(v), class: s.cls });
      r.append(node("title", {}, `${new Date(Date.parse(i.start)).toTimeString().slice(0, 5)} ${s.label}: ${v}`));
      svg.append(r);
    });
  }
  legend(svg, series);
  return svg;
}

/** Lines of ratios (0..1) per interval; intervals without a value break the line. */
export function linesChart(intervals, series, { title }) {
  const svg = frame(title);
  const w = window_(intervals);
  if (!w) return svg;
  const { x, y } = axes(svg, w.t0, w.t1, 1, (v) => Math.round(v * 100) + "%");
  for (const s of series) {
    let d = "";
    let pen = false;
    for (const i of w.list) {
      const v = i[s.key];
      const px = x((Date.parse(i.start) + Date.parse(i.end)) / 2);
      if (v === null || v === undefined) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${px.toFixed(1)},${y(v).toFixed(1)} `;
      pen = true;
      const dot = node("circle", { cx: px, cy: y(v), r: 3, class: s.cls });
      dot.append(node("title", {}, `${new Date(Date.parse(i.start)).toTimeString().slice(0, 5)} ${s.label}: ${Math.round(v * 100)}%`));
      svg.append(dot);
    }
    if (d) svg.append(node("path", { d, class: `line ${s.cls}` }));
  }
  legend(svg, series);
  return svg;
}
