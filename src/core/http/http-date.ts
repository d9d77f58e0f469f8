const DAY_NAMES = "Mon|Tue|Wed|Thu|Fri|Sat|Sun";
const LONG_DAY_NAMES = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const MONTH = MONTHS.join("|");
const MONTHS_LOWER = MONTHS.map((name) => name.toLowerCase());
// RFC 9111 §4.2: "a cache recipient SHOULD match the field value case-insensitively" (flag i).
const IMF_FIXDATE = new RegExp(`^(?:${DAY_NAMES}), (\\d{2}) (${MONTH}) (\\d{4}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`, "i");
const RFC850_DATE = new RegExp(
  `^(?:${LONG_DAY_NAMES}), (\\d{2})-(${MONTH})-(\\d{2}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`,
  "i",
);
const ASCTIME_DATE = new RegExp(`^(?:${DAY_NAMES}) (${MONTH}) ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2}) (\\d{4})$`, "i");

/**
 * Parses an HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms, RFC 9110
 * §5.6.7) to epoch ms; undefined when invalid. Two-digit RFC 850 years below 70 are 20xx:
 * the RFC's "more than 50 years in the future" rule needs a clock, and this is a pure function.
 *
 * @example
 * parseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"); // 784111777000
 */
export function parseHttpDate(value: string | null): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  let m = IMF_FIXDATE.exec(text);
  if (m) return utc(Number(m[3]), m[2], Number(m[1]), m[4], m[5], m[6]);
  m = RFC850_DATE.exec(text);
  if (m) {
    const yy = Number(m[3]);
    return utc(yy < 70 ? 2000 + yy : 1900 + yy, m[2], Number(m[1]), m[4], m[5], m[6]);
  }
  m = ASCTIME_DATE.exec(text);
  if (m) return utc(Number(m[6]), m[1], Number((m[2] ?? "").trim()), m[3], m[4], m[5]);
  return undefined;
}

/** Epoch ms of the given UTC fields, or undefined when out of range (31 Feb, 25:00). */
function utc(
  year: number,
  monthName: string | undefined,
  day: number,
  h?: string,
  min?: string,
  s?: string,
): number | undefined {
  const month = MONTHS_LOWER.indexOf((monthName ?? "").toLowerCase());
  const [hour, minute, second] = [Number(h), Number(min), Number(s)];
  // RFC 9110 §5.6.7 allows second 60 (a leap second): count it, after checking the calendar day.
  if (hour > 23 || minute > 59 || second > 60) return undefined;
  const midnight = Date.UTC(year, month, day);
  const check = new Date(midnight);
  if (check.getUTCDate() !== day || check.getUTCMonth() !== month) return undefined;
  return midnight + ((hour * 60 + minute) * 60 + second) * 1000;
}
