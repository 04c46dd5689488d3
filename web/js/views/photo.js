// One photo: preview, what is known about it, and what can be done with it.
import { api } from "../api.js";
import { ErrorBox, StateBadge } from "../components.js";
import * as fmt from "../format.js";
import { categoryLabel, t } from "../i18n.js";
import { html, useEffect, useState } from "../lib.js";
import { go } from "../shared.js";
import { images, putImage, useStore } from "../store.js";
import { forget } from "../upload.js";
import { saveBlob } from "../zip.js";

export function sourceText(classification) {
  if (!classification) return "";
  if (classification.source === "near_duplicate") return t("source_near_duplicate", { d: classification.distance ?? "?" });
  return t(`source_${classification.source}`);
}

function Why({ record }) {
  const reason = record.reason_message || record.reason;
  if (record.state === "rejected") return html`<p class="notice error" role="alert">${t("rejected_because", { reason })}</p>`;
  if (record.state === "failed") return html`<p class="notice error" role="alert">${t("failed_because", { reason })}</p>`;
  if ((record.state === "classification_failed" || record.state === "classification_skipped") && reason) {
    return html`<p class="notice warning">${t("not_classified_because", { reason })}</p>`;
  }
  return null;
}

export function PhotoPage({ id }) {
  useStore(images);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    api.get(`/images/${encodeURIComponent(id)}`).then(putImage, setError);
  }, [id]);
  const record = images.get(id);
  if (!record) {
    return html`<section><a href="#/">${t("back_to_library")}</a><${ErrorBox} error=${error} /></section>`;
  }
  const c = record.classification;
  const picture = record.urls && (record.urls.preview || record.urls.thumbnail);

  async function download() {
    setError(null);
    try {
      const fresh = await api.get(`/images/${encodeURIComponent(id)}`);
      const response = await fetch(fresh.urls.original);
      if (!response.ok) throw new Error(`the storage answered ${response.status}`);
      saveBlob(await response.blob(), record.filename);
    } catch (e) {
      setError(e);
    }
  }

  async function remove() {
    if (!window.confirm(t("confirm_delete_one"))) return;
    try {
      await api.del(`/images/${encodeURIComponent(id)}`);
      forget(record.sha256);
      images.remove(id);
      go("/");
    } catch (e) {
      setError(e);
    }
  }

  const rows = [
    [t("state"), html`<${StateBadge} state=${record.state} />`],
    [t("format"), record.format ? record.format.toUpperCase() : record.content_type],
    [t("dimensions"), record.width ? `${record.width} × ${record.height}` : "–"],
    [t("size"), fmt.bytes(record.bytes)],
    [t("sha256"), html`<code class="hash">${record.sha256 || "–"}</code>`],
    [t("phash"), html`<code class="hash">${record.phash || "–"}</code>`],
    [t("uploaded_at"), fmt.when(record.created_at)],
  ];
  if (c) {
    rows.push(
      [t("category"), html`<strong>${categoryLabel(c)}</strong>`],
      [t("confidence"), fmt.percent(c.confidence)],
      [t("reason"), c.reason],
      [t("source"), sourceText(c)],
    );
  }
  const usable = ["processed", "classified", "classification_failed", "classification_skipped"].includes(record.state);
  return html`<section class="photo-page">
    <p><a href="#/">${t("back_to_library")}</a></p>
    <h1>${record.filename}</h1>
    <${ErrorBox} error=${error} onDismiss=${() => setError(null)} />
    <${Why} record=${record} />
    <div class="photo-layout">
      <div class="photo-view">
        ${picture
          ? html`<img src=${picture} alt=${t("preview_of", { name: record.filename })} />`
          : html`<p class="muted">${t("no_preview")}</p>`}
      </div>
      <div>
        <dl class="facts">
          ${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
        </dl>
        <div class="actions">
          ${usable
            ? html`<button type="button" class="primary" onClick=${() => go(`/enhance/${encodeURIComponent(id)}`)}>
                ${t("enhance")}
              </button>`
            : null}
          ${record.state !== "pending_upload"
            ? html`<button type="button" onClick=${download}>${t("download_original")}</button>`
            : null}
          <button type="button" class="danger" onClick=${remove}>${t("delete_photo")}</button>
        </div>
      </div>
    </div>
  </section>`;
}
