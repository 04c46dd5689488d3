// What views share besides the stores: navigation, the credit balance shown in the header (asked for once,
// then kept current by the live updates' credits.updated) and the signed-in user's profile as the API
// last answered it (the admin flag decides whether the statistics are offered at all).
import { api } from "./api.js";
import { useEffect, useState } from "./lib.js";

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

/** A balance the server pushed (credits.updated) or answered. */
export function setCredits(balance) {
  credits = balance;
  creditListeners.forEach((fn) => fn(credits));
}

export async function refreshCredits() {
  try {
    setCredits((await api.get("/credits?limit=1")).balance);
  } catch {
    setCredits(null); // the header shows no balance rather than a stale one; the views show their own errors
  }
  return credits;
}

// null until GET /profile has answered in this tab: the session's stored user may predate a grant.
let profile = null;
const profileListeners = new Set();

export function currentProfile() {
  return profile;
}

export function onProfile(fn) {
  profileListeners.add(fn);
  return () => profileListeners.delete(fn);
}

export function setProfile(value) {
  profile = value;
  profileListeners.forEach((fn) => fn(profile));
}

/** The profile, re-rendering the caller when it changes (null while GET /profile has not answered). */
export function useProfile() {
  const [value, setValue] = useState(profile);
  useEffect(() => {
    const stop = onProfile(setValue);
    setValue(profile); // it may have changed between the render and this subscription
    return stop;
  }, []);
  return value;
}

/** Whether to offer the statistics: the profile's admin flag, else (before it answers) the session's. */
export function isAdmin(session) {
  if (profile && profile.user) return profile.user.admin === true;
  return Boolean(session && session.user && session.user.admin === true);
}
