/**
 * A self-contained SVG line chart: origin requests per second over time, one polyline per
 * runtime, on a log scale (the direct baseline is often 100× the herdless lines).
 */
import type { CellResult } from "./types.ts";

const COLORS: Record<string, string> = {
  direct: "#d62728",
  node: "#1f77b4",
  fleet: "#2ca02c",
  worker: "#ff7f0e",
  "bare-node": "#7f7f7f",
  "bare-worker": "#9467bd",
  nginx: "#8c564b",
};
const DASHES = ["", "", "8 4", "3 3", "1 3"];
const WIDTH = 760;
const HEIGHT = 400;
const PAD = { left: 64, right: 150, top: 40, bottom: 48 };

const escapeXml = (text: string): string => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** log10(1 + v): 0 stays at the axis, 1, 10, 100 … are evenly spaced. */
const scaleY = (v: number): number => Math.log10(1 + Math.max(0, v));

export function originChart(title: string, cells: CellResult[]): string {
  const series = cells
    .filter((c) => c.origin !== undefined)
    .map((c) => ({ name: c.runtime, points: c.origin?.timeline ?? [] }));
  const maxSeconds = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.atMs / 1000 + 1)));
  const maxValue = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.count)));
  // The axis ends at the first power of ten at or above the largest count.
  const decades = Math.max(1, Math.ceil(Math.log10(maxValue)));
  const top = scaleY(10 ** decades);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (seconds: number): number => PAD.left + (seconds / maxSeconds) * plotW;
  const y = (value: number): number => PAD.top + plotH - (scaleY(value) / top) * plotH;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`);
  out.push(`<text x="${PAD.left}" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>`);

  const outage = cells.find((c) => c.outage !== undefined)?.outage;
  if (outage) {
    const x0 = x(outage.startMs / 1000);
    const x1 = x((outage.startMs + outage.downMs) / 1000);
    out.push(
      `<rect x="${x0.toFixed(1)}" y="${PAD.top}" width="${(x1 - x0).toFixed(1)}" height="${plotH}" fill="#d62728" fill-opacity="0.08"/>`,
    );
    out.push(
      `<text x="${((x0 + x1) / 2).toFixed(1)}" y="${PAD.top + plotH - 6}" text-anchor="middle" fill="#a00">origin down (503)</text>`,
    );
  }

  // Y axis: 0, 1, 10, 100, … requests per second.
  for (let d = -1; d <= decades; d++) {
    const value = d < 0 ? 0 : 10 ** d;
    const yy = y(value).toFixed(1);
    out.push(`<line x1="${PAD.left}" x2="${PAD.left + plotW}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    out.push(`<text x="${PAD.left - 6}" y="${yy}" dy="4" text-anchor="end">${value}</text>`);
  }
  // X axis: seconds, about 10 ticks.
  const step = Math.max(1, Math.ceil(maxSeconds / 10));
  for (let s = 0; s <= maxSeconds; s += step) {
    const xx = x(s).toFixed(1);
    out.push(`<line x1="${xx}" x2="${xx}" y1="${PAD.top + plotH}" y2="${PAD.top + plotH + 4}" stroke="#333"/>`);
    out.push(`<text x="${xx}" y="${PAD.top + plotH + 17}" text-anchor="middle">${s}</text>`);
  }
  out.push(`<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${PAD.top + plotH}" stroke="#333"/>`);
  out.push(
    `<line x1="${PAD.left}" x2="${PAD.left + plotW}" y1="${PAD.top + plotH}" y2="${PAD.top + plotH}" stroke="#333"/>`,
  );
  out.push(
    `<text x="${PAD.left + plotW / 2}" y="${HEIGHT - 10}" text-anchor="middle">seconds since the run started</text>`,
  );
  out.push(
    `<text transform="translate(16 ${PAD.top + plotH / 2}) rotate(-90)" text-anchor="middle">origin requests per second (log scale)</text>`,
  );

  series.forEach((s, i) => {
    const color = COLORS[s.name] ?? "#000";
    // Each second's count is drawn over the whole second (a step line): bursts read as bursts.
    const points: string[] = [];
    for (const p of s.points) {
      const yy = y(p.count).toFixed(1);
      points.push(`${x(p.atMs / 1000).toFixed(1)},${yy}`, `${x(p.atMs / 1000 + 1).toFixed(1)},${yy}`);
    }
    // Equal lines would hide each other: earlier series are drawn wider, later ones dashed on top.
    const width = 2 + (series.length - 1 - i) * 1.5;
    const dash = DASHES[i % DASHES.length] ?? "";
    if (points.length > 0)
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="${width}" stroke-opacity="0.85"${dash === "" ? "" : ` stroke-dasharray="${dash}"`} points="${points.join(" ")}"/>`,
      );
    const ly = PAD.top + 10 + i * 20;
    const total = cells.find((c) => c.runtime === s.name)?.origin?.requests ?? 0;
    out.push(
      `<line x1="${WIDTH - PAD.right + 12}" x2="${WIDTH - PAD.right + 36}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="3"${dash === "" ? "" : ` stroke-dasharray="${dash}"`}/>`,
    );
    out.push(`<text x="${WIDTH - PAD.right + 42}" y="${ly}" dy="4">${escapeXml(s.name)} (${total})</text>`);
  });
  out.push(
    `<text x="${WIDTH - PAD.right + 12}" y="${PAD.top + 10 + series.length * 20 + 6}" font-size="10" fill="#555">(total origin requests)</text>`,
  );
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
