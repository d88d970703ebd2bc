// Money and AA splits, with the server's rules (rooms/money.py, rooms/aa.py): integer minor units,
// floors then the remainder one unit at a time in the order given. BigInt inside, because
// total * weight can pass 2**53 (10**11 minor units times a weight of 10**6).
import { EXPONENTS } from "./currencies.js";

export const MAX_MAJOR_UNITS = 10n ** 9n;

export function exponent(currency) {
  const e = EXPONENTS[currency];
  if (e === undefined) throw new Error(`unknown currency ${currency}`);
  return e;
}

export function isCurrency(code) {
  return Object.prototype.hasOwnProperty.call(EXPONENTS, code);
}

export function maxAmount(currency) {
  return Number(MAX_MAJOR_UNITS * 10n ** BigInt(exponent(currency)));
}

// "CNY 100.00", "JPY 500", "KWD 1.005" (rooms.money.format_amount).
export function formatAmount(amount, currency) {
  const digits = exponent(currency);
  const sign = amount < 0 ? "-" : "";
  const abs = BigInt(Math.abs(amount));
  const scale = 10n ** BigInt(digits);
  const whole = abs / scale;
  if (digits === 0) return `${currency} ${sign}${whole}`;
  const minor = String(abs % scale).padStart(digits, "0");
  return `${currency} ${sign}${whole}.${minor}`;
}

// "12.5" in CNY -> 1250; null for anything that is not a plain non-negative decimal with at most
// the currency's digits (no floats on the way: the text is split, never parsed as a number).
export function parseAmount(text, currency) {
  const digits = exponent(currency);
  const m = /^\s*(\d{1,15})(?:[.,](\d*))?\s*$/.exec(String(text));
  if (!m) return null;
  const frac = m[2] || "";
  if (frac.length > digits) return null;
  const value = BigInt(m[1]) * 10n ** BigInt(digits) + BigInt((frac + "0".repeat(digits)).slice(0, digits) || "0");
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return Number(value);
}

// rooms.aa.split_equal
export function splitEqual(total, participants) {
  const n = BigInt(participants.length);
  const t = BigInt(total);
  const base = t / n;
  const remainder = t % n;
  const shares = {};
  participants.forEach((p, i) => {
    shares[p] = Number(base + (BigInt(i) < remainder ? 1n : 0n));
  });
  return { shares, remainder: Number(remainder) };
}

// rooms.aa.split_weights: weights is [[user, weight], ...] in order.
export function splitWeights(total, weights) {
  const t = BigInt(total);
  const sum = weights.reduce((acc, [, w]) => acc + BigInt(w), 0n);
  const floors = weights.map(([p, w]) => [p, (t * BigInt(w)) / sum]);
  const remainder = t - floors.reduce((acc, [, f]) => acc + f, 0n);
  const shares = {};
  floors.forEach(([p, f], i) => {
    shares[p] = Number(f + (BigInt(i) < remainder ? 1n : 0n));
  });
  return { shares, remainder: Number(remainder) };
}

// The preview of a split form: {shares, remainder, problems: [message keys]}. `amounts` and
// `weights` map each participant to the text typed for them.
export function preview({ split, total, currency, participants, amounts = {}, weights = {} }) {
  const problems = [];
  if (!participants.length) return { shares: {}, remainder: 0, problems: ["aa.noParticipants"] };
  if (!Number.isInteger(total) || total <= 0) return { shares: {}, remainder: 0, problems: ["aa.badTotal"] };
  if (total > maxAmount(currency)) problems.push("aa.tooLarge");
  let result;
  if (split === "exact") {
    const shares = {};
    let sum = 0;
    for (const p of participants) {
      const a = parseAmount(amounts[p] ?? "", currency);
      if (a === null || a <= 0) {
        problems.push("aa.badAmount");
        shares[p] = null;
      } else {
        shares[p] = a;
        sum += a;
      }
    }
    // For an exact split the "remainder" is what is still to be assigned (negative: too much).
    result = { shares, remainder: total - sum };
    if (result.remainder !== 0) problems.push("aa.exactMismatch");
  } else if (split === "weights") {
    const ws = [];
    for (const p of participants) {
      const w = String(weights[p] ?? "1").trim();
      if (!/^\d{1,7}$/.test(w) || Number(w) < 1 || Number(w) > 1000000) {
        problems.push("aa.badWeight");
        return { shares: {}, remainder: 0, problems };
      }
      ws.push([p, Number(w)]);
    }
    result = splitWeights(total, ws);
  } else {
    result = splitEqual(total, participants);
  }
  if (split !== "exact" && Object.values(result.shares).some((s) => s < 1)) problems.push("aa.tooSmall");
  return { ...result, problems: [...new Set(problems)] };
}
