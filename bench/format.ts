/** A number for the report with `digits` decimals, or "–" when there is none (NaN, an infinite ratio). */
export const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : "–");
