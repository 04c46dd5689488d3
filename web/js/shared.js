// What views share besides the stores: navigation and the credit balance shown in the header.
import { api } from "./api.js";

export function go(path) {
  window.location.hash = path;
}

let credits = null;
const creditListeners = new Set();

export function currentCredits() {
  return credits;
}

export function onCredits(fn) {
  creditListeners.add(fn);
  return () => creditListeners.delete(fn);
}

export async function refreshCredits() {
  try {
    credits = (await api.get("/credits?limit=1")).balance;
  } catch {
    credits = null;
  }
  creditListeners.forEach((fn) => fn(credits));
  return credits;
}
