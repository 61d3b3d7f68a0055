// Line charts drawn as SVG from the history points; no chart library.
const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

// points: [{t, ...}], key: the field to draw. Returns an <svg> with a label, the latest
// value and the maximum, so it reads without a legend.
export function lineChart(points, key, { label, unit = '', scale = 1, digits = 1 }) {
  const W = 300, H = 120, P = 18;
  const vals = points.map(p => (p[key] === null || p[key] === undefined) ? null : p[key] * scale);
  const known = vals.filter(v => v !== null);
  const max = Math.max(1e-9, ...known);
  const el = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img' });
  const last = known.length ? known[known.length - 1] : null;
  const title = `${label}: ${last === null ? 'no data yet' : last.toFixed(digits) + unit}`;
  const t = svg('title', {}); t.textContent = title; el.append(t);
  el.setAttribute('aria-label', title);
  const n = Math.max(1, vals.length - 1);
  const coords = [];
  vals.forEach((v, i) => {
    if (v === null) return;
    const x = P + (W - 2 * P) * (i / n);
    const y = H - P - (H - 2 * P) * (v / max);
    coords.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  if (coords.length) el.append(svg('polyline', { points: coords.join(' ') }));
  const cap = svg('text', { x: P, y: 12 }); cap.textContent = title; el.append(cap);
  const top = svg('text', { x: W - P, y: 12, 'text-anchor': 'end' });
  top.textContent = known.length ? `max ${max.toFixed(digits)}${unit}` : '';
  el.append(top);
  const span = svg('text', { x: W - P, y: H - 4, 'text-anchor': 'end' });
  span.textContent = points.length ? `last ${Math.round((points[points.length - 1].t - points[0].t) / 60000)} min` : '';
  el.append(span);
  return el;
}
