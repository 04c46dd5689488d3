// The classify test: drop one photo, see its category at once. Its SHA-256 is asked of the cache first, so
// a photo the service already knows is not sent at all; otherwise it goes to POST /classify.
import { api } from "../api.js";
import { ErrorBox, Notice } from "../components.js";
import * as fmt from "../format.js";
import { categoryLabel, t } from "../i18n.js";
import { html, useEffect, useState } from "../lib.js";
import { compressToBudget, sha256Hex } from "../images.js";
import { contentType } from "../upload.js";
import { sourceText } from "./photo.js";

const MAX_BYTES = 4_400_000; // POST /classify: Lambda's request payload once base64-encoded

export function ClassifyPage() {
  const [file, setFile] = useState(null);
  const [preview, setPreview] = useState(null);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => () => preview && URL.revokeObjectURL(preview), [preview]);

  async function classify(chosen) {
    setFile(chosen);
    setPreview(URL.createObjectURL(chosen));
    setResult(null);
    setError(null);
    setBusy(true);
    try {
      const sha256 = await sha256Hex(chosen);
      const check = await api.post("/classify/check-cache", { sha256 });
      if (check.hit && check.classification) {
        setResult({ ...check.classification, source: check.source, distance: check.distance, cached: true });
        return;
      }
      let body = chosen;
      if (chosen.size > MAX_BYTES) body = (await compressToBudget(chosen, { maxBytes: MAX_BYTES, maxSide: 4096 })) || chosen;
      const answer = await api.post("/classify", body, { headers: { "content-type": contentType(body) } });
      setResult(answer);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const onPick = (event) => {
    const chosen = event.target.files && event.target.files[0];
    event.target.value = "";
    if (chosen) classify(chosen);
  };
  const onDrop = (event) => {
    event.preventDefault();
    const chosen = event.dataTransfer.files && event.dataTransfer.files[0];
    if (chosen) classify(chosen);
  };

  return html`<section>
    <h1>${t("classify_title")}</h1>
    <p class="muted">${t("classify_help")}</p>
    <div class="dropzone" onDragOver=${(e) => e.preventDefault()} onDrop=${onDrop}>
      <label class="button primary">
        ${t("classify_choose")}
        <input class="visually-hidden" type="file" accept="image/*,.heic,.heif,.avif" onChange=${onPick} />
      </label>
    </div>
    <${ErrorBox} error=${error} onDismiss=${() => setError(null)} />
    <div class="photo-layout">
      ${preview ? html`<div class="photo-view"><img src=${preview} alt=${file ? file.name : ""} /></div>` : null}
      <div>
        ${busy ? html`<p role="status">${t("classifying")}</p>` : null}
        ${result
          ? html`<h2>${t("classify_result")}</h2>
              <p class="verdict" role="status">${categoryLabel(result)}</p>
              ${result.cached ? html`<${Notice}>${t("from_cache_not_sent")}</${Notice}>` : null}
              <dl class="facts">
                <dt>${t("confidence")}</dt><dd>${fmt.percent(result.confidence)}</dd>
                <dt>${t("reason")}</dt><dd>${result.reason}</dd>
                <dt>${t("source")}</dt><dd>${sourceText(result)}</dd>
                ${result.model ? html`<dt>Model</dt><dd>${result.model}</dd>` : null}
                ${result.width ? html`<dt>${t("dimensions")}</dt><dd>${result.width} × ${result.height}</dd>` : null}
              </dl>`
          : null}
      </div>
    </div>
  </section>`;
}
