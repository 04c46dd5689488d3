// The library: a grid of thumbnails (loaded as they scroll into view), pages of 100 following the cursor,
// filters by state and category, badges that change live, and select many -> delete, enhance, download.
import { api } from "../api.js";
import { CategoryChip, ErrorBox, Notice, StateBadge } from "../components.js";
import { categoryLabel, t } from "../i18n.js";
import { html, useEffect, useRef, useState } from "../lib.js";
import { go } from "../shared.js";
import { CATEGORIES, IMAGE_STATES, images, putImage, useStore } from "../store.js";
import { forget } from "../upload.js";
import { saveBlob, zip } from "../zip.js";

const PAGE_SIZE = 100;
let observer = null;
const pendingThumbs = new Map();

/** One IntersectionObserver for every thumbnail: the image's src is set when it nears the viewport. */
function watch(img, src) {
  if (!("IntersectionObserver" in window)) {
    img.src = src;
    return () => {};
  }
  if (!observer) {
    observer = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting) continue;
          const target = entry.target;
          const wanted = pendingThumbs.get(target);
          if (wanted) target.src = wanted;
          pendingThumbs.delete(target);
          observer.unobserve(target);
        }
      },
      { rootMargin: "200px 0px" },
    );
  }
  pendingThumbs.set(img, src);
  observer.observe(img);
  return () => {
    pendingThumbs.delete(img);
    observer.unobserve(img);
  };
}

function Thumb({ record, first }) {
  const ref = useRef(null);
  const retried = useRef(false);
  const src = record.urls && record.urls.thumbnail;
  useEffect(() => (ref.current && src ? watch(ref.current, src) : undefined), [src]);
  const onError = async () => {
    if (retried.current) return;
    retried.current = true; // the short-lived link expired: ask for a new one, once
    try {
      putImage(await api.get(`/images/${encodeURIComponent(record.image_id)}`));
    } catch {
      // shown without a picture
    }
  };
  if (!src) return html`<div class="thumb placeholder" aria-hidden="true"></div>`;
  return html`<img
    ref=${ref}
    class="thumb"
    alt=${record.filename}
    width="256"
    height="256"
    decoding="async"
    elementtiming=${first ? "first-thumbnail-row" : undefined}
    onError=${onError}
  />`;
}

function Card({ id, selected, onToggle, firstRow }) {
  const record = images.get(id);
  if (!record) return null;
  return html`<li class=${`card photo${selected ? " selected" : ""}`} data-image-id=${id}>
    <a href=${`#/photo/${encodeURIComponent(id)}`} aria-label=${t("open_photo", { name: record.filename })}>
      <${Thumb} record=${record} first=${firstRow} />
    </a>
    <div class="meta">
      <label class="select">
        <input type="checkbox" checked=${selected} onChange=${() => onToggle(id)} />
        <span class="visually-hidden">${t("select_photo", { name: record.filename })}</span>
      </label>
      <span class="name" title=${record.filename}>${record.filename}</span>
    </div>
    <div class="meta">
      <${StateBadge} state=${record.state} />
      <${CategoryChip} classification=${record.classification} />
    </div>
  </li>`;
}

async function downloadOriginals(ids, setStatus) {
  const files = [];
  for (const id of ids) {
    const record = await api.get(`/images/${encodeURIComponent(id)}`);
    if (!record.urls || !record.urls.original) continue;
    const response = await fetch(record.urls.original);
    if (!response.ok) throw new Error(`${record.filename}: the storage answered ${response.status}`);
    files.push({ name: record.filename, bytes: new Uint8Array(await response.arrayBuffer()) });
    setStatus(`${t("preparing_zip")} ${files.length}/${ids.length}`);
  }
  saveBlob(zip(files), `photopipe-${new Date().toISOString().slice(0, 10)}.zip`);
  return files.length;
}

export function GalleryPage({ params }) {
  useStore(images);
  const state = params.get("state") || "";
  const category = params.get("category") || "";
  const [ids, setIds] = useState([]);
  const [cursor, setCursor] = useState(null);
  const [done, setDone] = useState(false);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState(null);
  const [selected, setSelected] = useState(new Set());
  const sentinel = useRef(null);
  const generation = useRef(0);

  async function load(from, reset) {
    const mine = generation.current;
    setLoading(true);
    setError(null);
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state) query.set("state", state);
    if (category) query.set("category", category);
    if (from) query.set("cursor", from);
    try {
      const page = await api.get(`/images?${query}`);
      if (mine !== generation.current) return;
      page.items.forEach(putImage);
      const newIds = page.items.map((r) => r.image_id);
      setIds((old) => (reset ? newIds : [...old, ...newIds.filter((id) => !old.includes(id))]));
      setCursor(page.next_cursor || null);
      setDone(!page.next_cursor);
    } catch (e) {
      if (mine === generation.current) setError(e);
    } finally {
      if (mine === generation.current) setLoading(false);
    }
  }

  useEffect(() => {
    generation.current += 1;
    setIds([]);
    setSelected(new Set());
    setDone(false);
    load(null, true);
  }, [state, category]);

  useEffect(() => {
    // The next page when the end of the grid nears the viewport (the button does the same by hand).
    if (!sentinel.current || done || !("IntersectionObserver" in window)) return undefined;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && !loading && cursor) load(cursor, false);
    });
    io.observe(sentinel.current);
    return () => io.disconnect();
  }, [cursor, done, loading]);

  const setFilter = (name, value) => {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    go(`/${next.toString() ? `?${next}` : ""}`);
  };
  const toggle = (id) =>
    setSelected((old) => {
      const next = new Set(old);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });
  const chosen = ids.filter((id) => selected.has(id));

  async function remove() {
    if (!chosen.length || !window.confirm(t("confirm_delete", { n: chosen.length }))) return;
    setError(null);
    try {
      const answer = await api.post("/images/batch-delete", { image_ids: chosen });
      const gone = new Set([...answer.deleted, ...answer.not_found]);
      for (const id of gone) {
        forget(images.get(id) && images.get(id).sha256);
        images.remove(id);
      }
      setIds((old) => old.filter((id) => !gone.has(id)));
      setSelected(new Set());
      setStatus(t("deleted", { n: answer.deleted.length }));
    } catch (e) {
      setError(e);
    }
  }

  async function download() {
    setError(null);
    setStatus(t("preparing_zip"));
    try {
      const n = await downloadOriginals(chosen, setStatus);
      setStatus(t("zip_ready", { n }));
    } catch (e) {
      setStatus(null);
      setError(e);
    }
  }

  const columnsGuess = 6;
  return html`<section>
    <h1>${t("library")}</h1>
    <div class="toolbar" role="group" aria-label=${t("library")}>
      <label>
        ${t("filter_state")}
        <select value=${state} onChange=${(e) => setFilter("state", e.target.value)}>
          <option value="">${t("any")}</option>
          ${IMAGE_STATES.map((s) => html`<option value=${s}>${t(`state_${s}`)}</option>`)}
        </select>
      </label>
      <label>
        ${t("filter_category")}
        <select value=${category} onChange=${(e) => setFilter("category", e.target.value)}>
          <option value="">${t("any")}</option>
          ${CATEGORIES.map((c) => html`<option value=${c.category}>${categoryLabel(c)}</option>`)}
        </select>
      </label>
      <span class="spacer"></span>
      <span role="status" aria-live="polite">${chosen.length ? t("selected", { n: chosen.length }) : ""}</span>
      <button type="button" onClick=${() => setSelected(new Set(ids))} disabled=${!ids.length}>
        ${t("select_all")}
      </button>
      ${chosen.length
        ? html`<button type="button" onClick=${() => setSelected(new Set())}>${t("clear_selection")}</button>
            <button type="button" onClick=${() => go(`/enhance?ids=${chosen.join(",")}`)}>
              ${t("enhance_selected")}
            </button>
            <button type="button" onClick=${download}>${t("download_selected")}</button>
            <button type="button" class="danger" onClick=${remove}>${t("delete_selected")}</button>`
        : null}
    </div>
    <${ErrorBox} error=${error} onDismiss=${() => setError(null)} />
    ${status ? html`<${Notice}>${status}</${Notice}>` : null}
    ${!loading && !ids.length && !error
      ? html`<p class="empty">${t("empty_library")} <a href="#/upload">${t("go_upload")}</a></p>`
      : null}
    <ul class="grid" aria-label=${t("photos_shown", { n: ids.length })}>
      ${ids.map(
        (id, i) =>
          html`<${Card}
            key=${id}
            id=${id}
            selected=${selected.has(id)}
            onToggle=${toggle}
            firstRow=${i < columnsGuess}
          />`,
      )}
    </ul>
    <div ref=${sentinel} class="more">
      ${loading ? html`<p role="status">${t("loading")}</p>` : null}
      ${!loading && cursor
        ? html`<button type="button" onClick=${() => load(cursor, false)}>${t("load_more")}</button>`
        : null}
      ${done && ids.length ? html`<p class="muted">${t("end_of_library")}</p>` : null}
    </div>
  </section>`;
}
