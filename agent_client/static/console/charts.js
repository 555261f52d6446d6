// charts.js: the wallboard's charts as inline SVG, drawn from the API's 15-minute intervals.
//
//   barsChart(intervals, [{key: "offered", label, cls}, {key: "answered", ...}, ...], {title})
//     -> <svg data-offered="N" data-answered="N" ... data-bars="N">
//   linesChart(intervals, [{key: "service_level", label, cls}, ...], {title}) -> <svg>
//
// `intervals` is GET /api/stats/queues/{queue}/intervals's `intervals` (start, end, figures),
// from the day's first interval (the service's local midnight) up to the current one. The time
// axis runs from that first interval over the whole day (24 hours, or the day's length on a
// daylight-saving change), labelled in the browser's local time at whole local hours. The
// svg carries each series' day total as a data attribute (tests and screen readers use them).
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
  if (!intervals.length) return null;
  const t0 = Date.parse(intervals[0].start);
  const t1 = Math.max(Date.parse(intervals[intervals.length - 1].end), t0 + 24 * 3600e3);
  return { t0, t1, list: intervals };
}

const hhmm = (t) => { const d = new Date(t); return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`; };

function axes(svg, t0, t1, max, fmt) {
  const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.append(node("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(node("text", { x: PAD.l - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v)));
  }
  // Whole hours of the browser's local time (also where the zone is not whole hours off UTC),
  // every 1, 2 or 3 hours as the span needs; none on the right edge (the next day's midnight).
  const hours = (t1 - t0) / 3600e3;
  const step = hours > 12 ? 3 : hours > 6 ? 2 : 1;
  const d = new Date(t0);
  d.setMinutes(0, 0, 0);
  if (d.getTime() < t0) d.setHours(d.getHours() + 1);
  for (let n = 0; d.getTime() < t1 && n < 100; n++, d.setHours(d.getHours() + 1)) {
    if (d.getHours() % step) continue;
    svg.append(node("text", { x: x(d.getTime()), y: H - 10, class: "tick", "text-anchor": "middle" }, hhmm(d.getTime())));
  }
  return { x, y };
}

// Legend text is measured roughly: CJK and other wide characters take a full em (the 11px
// font), the rest about 0.6 em, so a Chinese legend does not run into the next entry.
function textWidth(text) {
  let w = 0;
  for (const ch of text) w += ch.codePointAt(0) >= 0x2e80 ? 11 : 6.6;
  return w;
}

function legend(svg, series) {
  let lx = PAD.l + 4;
  for (const s of series) {
    svg.append(node("rect", { x: lx, y: 2, width: 10, height: 10, class: s.cls }));
    svg.append(node("text", { x: lx + 14, y: 11, class: "legend" }, s.label));
    lx += 14 + textWidth(s.label) + 14;
  }
}

function totals(svg, intervals, series) {
  for (const s of series) {
    const sum = intervals.reduce((a, i) => a + (i[s.key] || 0), 0);
    svg.setAttribute(`data-${s.key.replaceAll("_", "-")}`, String(sum));
  }
}

/** One bar per interval: the first series is the whole (offered), the others its parts
 * (answered, abandoned) stacked from the bottom; what is left of the whole is drawn on top. */
export function barsChart(intervals, series, { title }) {
  const svg = frame(title);
  totals(svg, intervals, series);
  const w = window_(intervals);
  if (!w) { svg.setAttribute("data-bars", "0"); return svg; }
  const [whole, ...parts] = series;
  const partsOf = (i) => parts.reduce((a, s) => a + (i[s.key] || 0), 0);
  let max = 1;
  for (const i of w.list) max = Math.max(max, i[whole.key] || 0, partsOf(i));
  max = Math.ceil(max / 4) * 4;
  const { x, y } = axes(svg, w.t0, w.t1, max, (v) => String(Math.round(v)));
  let bars = 0;
  for (const i of w.list) {
    const start = Date.parse(i.start);
    const left = x(start);
    const width = Math.max(1.5, (x(Date.parse(i.end)) - left) * 0.8);
    const segments = [...parts.map((s) => [s, i[s.key] || 0]), [whole, Math.max(0, (i[whole.key] || 0) - partsOf(i))]];
    if (!segments.some(([, v]) => v)) continue;
    bars++;
    const g = node("g", { class: "bar", "data-start": i.start });
    g.append(node("title", {}, `${hhmm(start)}–${hhmm(Date.parse(i.end))} ` + series.map((s) => `${s.label} ${i[s.key] || 0}`).join(", ")));
    let base = 0;
    for (const [s, v] of segments) {
      if (!v) continue;
      g.append(node("rect", { x: left, y: y(base + v), width, height: y(base) - y(base + v), class: s.cls }));
      base += v;
    }
    svg.append(g);
  }
  svg.setAttribute("data-bars", String(bars));
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
      dot.append(node("title", {}, `${hhmm(Date.parse(i.start))} ${s.label}: ${Math.round(v * 100)}%`));
      svg.append(dot);
    }
    if (d) svg.append(node("path", { d, class: `line ${s.cls}` }));
  }
  legend(svg, series);
  return svg;
}
