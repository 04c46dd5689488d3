// The single-page app: hash routes, the header (navigation, credits, live status, language), the session.
import { ApiError, api, apiBase, getSession, loadConfig, onSession, signOut, updateUser } from "./api.js";
import { LANGUAGES, lang, onLang, setLang, t } from "./i18n.js";
import { html, render, useEffect, useState } from "./lib.js";
import { liveStatus, onLive, onLiveStatus, startLive, stopLive } from "./live.js";
import { currentCredits, isAdmin, onCredits, refreshCredits, setCredits, setProfile, useProfile } from "./shared.js";
import { FINAL_JOB_STATES, images, jobs, putImage, putJob } from "./store.js";
import { AuthPage } from "./views/auth.js";
import { BatchPage, EnhancePage, JobPage } from "./views/enhance.js";
import { BuyPage } from "./views/buy.js";
import { ClassifyPage } from "./views/classify.js";
import { GalleryPage } from "./views/gallery.js";
import { PhotoPage } from "./views/photo.js";
import { StatsPage } from "./views/stats.js";
import { UploadPage } from "./views/upload.js";

// ------------------------------------------------------------------ live updates into the stores
onLive(async (message) => {
  if (message.type === "image.updated" && message.image_id) {
    const known = images.get(message.image_id);
    if (!known) return;
    images.patch(message.image_id, { state: message.state, reason: message.reason ?? known.reason });
    if (message.state !== "pending_upload" && message.state !== "processing") {
      try {
        putImage(await api.get(`/images/${encodeURIComponent(message.image_id)}`));
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) images.remove(message.image_id);
      }
    }
  } else if (message.type === "job.updated" && message.job_id) {
    const known = jobs.get(message.job_id);
    const patch = { state: message.state };
    if (message.progress != null) patch.progress = message.progress;
    if (known) jobs.patch(message.job_id, patch);
    if (FINAL_JOB_STATES.has(message.state)) {
      try {
        putJob(await api.get(`/enhance/${encodeURIComponent(message.job_id)}`));
      } catch {
        // the job page shows what it has
      }
    }
  } else if (message.type === "credits.updated" && typeof message.balance === "number") {
    setCredits(message.balance);
  } else if (message.type === "live.reconnected") {
    // Catch up once on what may have been missed while the connection was down.
    refreshCredits();
    for (const id of [...document.querySelectorAll("[data-image-id]")].map((el) => el.dataset.imageId)) {
      const record = images.get(id);
      if (record && record.state !== "classified") {
        api.get(`/images/${encodeURIComponent(id)}`).then(putImage, () => {});
      }
    }
  }
});

// ------------------------------------------------------------------ routing
function parseRoute() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || "gallery", id: parts[1] || null, params: new URLSearchParams(query) };
}

function useRoute() {
  const [route, setRoute] = useState(parseRoute());
  useEffect(() => {
    const onChange = () => {
      setRoute(parseRoute());
      const main = document.getElementById("main");
      if (main) main.focus({ preventScroll: false });
    };
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

const PAGES = {
  gallery: GalleryPage,
  upload: UploadPage,
  photo: PhotoPage,
  enhance: EnhancePage,
  job: JobPage,
  batch: BatchPage,
  stats: StatsPage,
  classify: ClassifyPage,
  buy: BuyPage,
};

function LiveIndicator() {
  const [status, setStatus] = useState(liveStatus());
  useEffect(() => {
    const stop = onLiveStatus(setStatus);
    setStatus(liveStatus()); // it may have changed between the render and this subscription
    return stop;
  }, []);
  const text =
    status.state === "live"
      ? t("live_on")
      : status.state === "retrying"
        ? t("live_retrying", { s: status.inSeconds || 0 })
        : status.state === "unavailable"
          ? t("live_unavailable")
          : status.state === "connecting"
            ? t("live_connecting")
            : "";
  if (!text) return null;
  return html`<span class=${`live live-${status.state}`} role="status" aria-live="polite">${text}</span>`;
}

function Header({ session, route }) {
  const [balance, setBalance] = useState(currentCredits());
  useEffect(() => {
    const stop = onCredits(setBalance);
    setBalance(currentCredits());
    return stop;
  }, []);
  const user = session && session.user;
  const link = (name, href, label) =>
    html`<a href=${href} aria-current=${route.name === name ? "page" : undefined}>${label}</a>`;
  useProfile(); // re-render when GET /profile answers: the admin flag may differ from the stored session's
  const mayReadStats = isAdmin(session);
  return html`<header class="top">
    <a class="skip" href="#main">${t("skip_to_content")}</a>
    <div class="brand"><a href="#/">${t("app_name")}</a></div>
    ${session
      ? html`<nav aria-label=${t("nav_main")}>
          ${link("gallery", "#/", t("nav_gallery"))} ${link("upload", "#/upload", t("nav_upload"))}
          ${link("classify", "#/classify", t("nav_classify"))}
          ${mayReadStats ? link("stats", "#/stats", t("nav_stats")) : null}
          ${link("buy", "#/buy", t("nav_buy"))}
          <a href=${`${apiBase()}/docs`}>${t("nav_docs")}</a>
        </nav>`
      : null}
    <div class="tools">
      ${session && balance != null
        ? html`<a class="credits" href="#/buy" aria-label=${t("credits", { n: balance })}>
            ${t("credits", { n: balance })}</a
          >`
        : null}
      ${session ? html`<${LiveIndicator} />` : null}
      <label class="lang">
        <span class="visually-hidden">${t("language")}</span>
        <select value=${lang()} onChange=${(e) => setLang(e.target.value)}>
          ${Object.entries(LANGUAGES).map(([code, name]) => html`<option value=${code}>${name}</option>`)}
        </select>
      </label>
      ${session
        ? html`<span class="who">${user ? user.username : ""}</span>
            <button type="button" onClick=${() => signOut()}>${t("sign_out")}</button>`
        : null}
    </div>
  </header>`;
}

function App() {
  const [session, setSessionState] = useState(getSession());
  const [, setLanguage] = useState(lang());
  const [ended, setEnded] = useState(false);
  const route = useRoute();
  useEffect(() => onLang(setLanguage), []);
  useEffect(
    () =>
      onSession((value) => {
        if (!value && session) setEnded(true);
        setSessionState(value);
      }),
    [session],
  );
  useEffect(() => {
    if (!session) {
      stopLive();
      setProfile(null);
      return;
    }
    setEnded(false);
    startLive();
    refreshCredits();
    api.get("/profile").then(
      (answer) => {
        setProfile(answer);
        if (answer && answer.user) updateUser(answer.user);
      },
      (error) => setProfile({ user: session.user, error }), // the pages that need it say what went wrong
    );
  }, [session && session.user && session.user.user_id]);

  if (!session) {
    return html`<${Header} session=${null} route=${route} />
      <main id="main" tabindex="-1">
        <${AuthPage} mode=${route.name === "register" ? "register" : "login"} ended=${ended} />
      </main>`;
  }
  const Page = PAGES[route.name];
  return html`<${Header} session=${session} route=${route} />
    <main id="main" tabindex="-1">
      ${Page
        ? html`<${Page} id=${route.id} params=${route.params} session=${session} />`
        : html`<p>${t("page_not_found")}</p>`}
    </main>`;
}

await loadConfig();
const root = document.getElementById("app");
root.textContent = "";
render(html`<${App} />`, root);
