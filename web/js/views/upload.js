// Upload: drop files and folders, or pick them; the queue with per-file progress, speed and reasons.

import * as fmt from "../format.js";
import { categoryLabel, t } from "../i18n.js";
import { html, useEffect, useState } from "../lib.js";
import { entriesOf, filesFromDrop, filesFromInput } from "../files.js";
import { addFiles, clearDone, onQueue, queue, retry, retryFailed, setConcurrency, settings } from "../upload.js";

function statusText(item) {
  switch (item.status) {
    case "uploading":
      return t("up_uploading", { p: Math.round(item.progress * 100), speed: fmt.bytes(item.speed) });
    case "duplicate":
    case "already":
      return item.note;
    default:
      return t(`up_${item.status}`);
  }
}

function Row({ item }) {
  return html`<li class=${`upload-item status-${item.status}`} data-status=${item.status}>
    <div class="upload-line">
      <span class="name">${item.name}</span>
      <span class="muted">${fmt.bytes(item.size)}</span>
      <span class="status">${statusText(item)}</span>
      ${item.status === "failed" && !item.final
        ? html`<button type="button" onClick=${() => retry(item)} aria-label=${`${t("retry")}: ${item.name}`}>
            ${t("retry")}
          </button>`
        : null}
    </div>
    ${item.status === "uploading"
      ? html`<progress max="100" value=${Math.round(item.progress * 100)} aria-label=${item.name}></progress>`
      : null}
    ${item.error ? html`<p class="reason" role="alert">${item.name}: ${item.error}</p>` : null}
    ${item.known ? html`<p class="muted">${t("known_category", { label: categoryLabel(item.known) })}</p>` : null}
    ${item.compressed
      ? html`<p class="muted">
          ${t("compressed_to", { from: fmt.bytes(item.compressed.from), to: fmt.bytes(item.compressed.to) })}
        </p>`
      : null}
  </li>`;
}

export function UploadPage() {
  const [, setTick] = useState(0);
  const [over, setOver] = useState(false);
  useEffect(() => onQueue(() => setTick((n) => n + 1)), []);

  const onDrop = async (event) => {
    event.preventDefault();
    setOver(false);
    const taken = entriesOf(event.dataTransfer); // while the event is live
    addFiles(await filesFromDrop(taken));
  };
  const onPick = (event) => {
    addFiles(filesFromInput(event.target));
    event.target.value = "";
  };
  const finished = queue.filter((i) => ["done", "duplicate", "already"].includes(i.status)).length;
  const failed = queue.filter((i) => i.status === "failed").length;

  return html`<section>
    <h1>${t("upload_title")}</h1>
    <div
      class=${`dropzone${over ? " over" : ""}`}
      onDragOver=${(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave=${() => setOver(false)}
      onDrop=${onDrop}
      role="region"
      aria-label=${t("drop_here")}
    >
      <p class="big">${t("drop_here")}</p>
      <p class="muted">${t("drop_hint")}</p>
      <div class="pickers">
        <label class="button primary">
          ${t("choose_files")}
          <input class="visually-hidden" type="file" multiple accept="image/*,.heic,.heif,.avif" onChange=${onPick} />
        </label>
        <label class="button">
          ${t("choose_folder")}
          <input class="visually-hidden" type="file" webkitdirectory="" multiple onChange=${onPick} />
        </label>
      </div>
    </div>
    <fieldset class="settings">
      <label>
        ${t("parallel")}
        <select value=${settings.concurrency} onChange=${(e) => setConcurrency(Number(e.target.value))}>
          ${[1, 2, 3, 4, 6, 8].map((n) => html`<option value=${n}>${n}</option>`)}
        </select>
      </label>
      <label class="check">
        <input type="checkbox" checked=${settings.compress}
          onChange=${(e) => {
            settings.compress = e.target.checked;
            setTick((n) => n + 1);
          }} />
        ${t("compress")}
      </label>
      <label>
        ${t("compress_budget")}
        <input type="number" min="50" max="20000" step="50" value=${settings.maxKb} disabled=${!settings.compress}
          onChange=${(e) => (settings.maxKb = Math.max(50, Number(e.target.value) || 400))} />
      </label>
      <label>
        ${t("compress_side")}
        <input type="number" min="256" max="8192" step="64" value=${settings.maxSide} disabled=${!settings.compress}
          onChange=${(e) => (settings.maxSide = Math.max(256, Number(e.target.value) || 1920))} />
      </label>
    </fieldset>
    ${queue.length
      ? html`<h2>${t("queue")}</h2>
          <p role="status" aria-live="polite">
            ${t("uploads_summary", { done: finished, total: queue.length, failed })}
          </p>
          <div class="toolbar">
            <button type="button" onClick=${clearDone}>${t("clear_done")}</button>
            ${failed ? html`<button type="button" onClick=${retryFailed}>${t("retry_failed")}</button>` : null}
            <a class="button" href="#/">${t("nav_gallery")}</a>
          </div>
          <ul class="uploads">
            ${queue.map((item) => html`<${Row} key=${item.id} item=${item} />`)}
          </ul>`
      : null}
  </section>`;
}

