// Numbers, sizes and dates for people.
import { lang } from "./i18n.js";

export function bytes(n) {
  if (n == null || Number.isNaN(n)) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value < 10 && unit > 0 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function percent(x, digits = 0) {
  return `${(Number(x || 0) * 100).toFixed(digits)}%`;
}

export function number(n) {
  return new Intl.NumberFormat(lang() === "zh" ? "zh-CN" : "en").format(Number(n || 0));
}

export function money(amount, currency) {
  return new Intl.NumberFormat(lang() === "zh" ? "zh-CN" : "en", {
    style: "currency",
    currency: currency || "CNY",
    currencyDisplay: "narrowSymbol",
    maximumFractionDigits: 4,
  }).format(Number(amount || 0));
}

export function when(iso) {
  if (!iso) return "–";
  const d = typeof iso === "number" ? new Date(iso * 1000) : new Date(iso);
  return d.toLocaleString(lang() === "zh" ? "zh-CN" : "en");
}

export function time(d = new Date()) {
  return d.toLocaleTimeString(lang() === "zh" ? "zh-CN" : "en");
}
