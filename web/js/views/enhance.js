// Enhancement: the parameters (explained), one job's live progress with the before/after slider and the
// download, and a batch's jobs with its ZIP once ready.
import { api, request } from "../api.js";
import { BeforeAfter, ErrorBox, Notice, ProgressBar } from "../components.js";
import { t } from "../i18n.js";
import { html, useEffect, useState } from "../lib.js";
import { go } from "../shared.js";
import { FINAL_JOB_STATES, images, jobs, putImage, putJob, useStore } from "../store.js";
import { saveBlob } from "../zip.js";

export function EnhancePage({ id, params }) {
  const ids = id ? [id] : (params.get("ids") || "").split(",").filter(Boolean);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    const chosen = {
      scale: Number(form.get("scale")),
      quality_level: String(form.get("quality_level")),
      tile_size: Number(form.get("tile_size")),
    };
    setBusy(true);
    setError(null);
    try {
      if (ids.length === 1) {
        const job = await api.post("/enhance", { image_id: ids[0], params: chosen });
        putJob(job); // the header's balance follows with credits.updated
        go(`/job/${encodeURIComponent(job.job_id)}`);
      } else {
        const batch = await api.post("/enhance/batch", { image_ids: ids, params: chosen });
        batch.jobs.forEach(putJob);
        go(`/batch/${encodeURIComponent(batch.batch_id)}`);
      }
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  return html`<section class="card narrow">
    <h1>${t("enhance_title")}</h1>
    <p class="muted">${t("enhance_cost", { n: ids.length })}</p>
    <${ErrorBox} error=${error} onDismiss=${() => setError(null)} />
    <form onSubmit=${submit}>
      <label for="scale">${t("scale")}</label>
      <select id="scale" name="scale" aria-describedby="scale-help">
        ${[1, 2, 3, 4].map((n) => html`<option value=${n} selected=${n === 2}>${n}×</option>`)}
      </select>
      <p id="scale-help" class="hint">${t("scale_help")}</p>
      <fieldset>
        <legend>${t("quality_level")}</legend>
        ${["fast", "medium", "high"].map(
          (level) => html`<label class="radio">
            <input type="radio" name="quality_level" value=${level} checked=${level === "high"} />
            ${t(`quality_${level}`)}
          </label>`,
        )}
      </fieldset>
      <label for="tile_size">${t("tile_size")}</label>
      <input id="tile_size" name="tile_size" type="number" min="128" max="1024" step="8" value="400"
        aria-describedby="tile-help" required />
      <p id="tile-help" class="hint">${t("tile_help")}</p>
      <button type="submit" class="primary" disabled=${busy || !ids.length}>${t("start_enhance")}</button>
    </form>
  </section>`;
}

async function saveUrl(url, name) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`the storage answered ${response.status}`);
  saveBlob(await response.blob(), name);
}

export function JobPage({ id }) {
  useStore(jobs);
  useStore(images);
  const [error, setError] = useState(null);
  useEffect(() => {
    api.get(`/enhance/${encodeURIComponent(id)}`).then((job) => {
      putJob(job);
      return api.get(`/images/${encodeURIComponent(job.image_id)}`).then(putImage);
    }).catch(setError);
  }, [id]);
  const job = jobs.get(id);
  useEffect(() => {
    // The result link arrives with the final state (the live update triggers one read of the job).
    if (job && job.state === "completed" && !job.result_url) api.get(`/enhance/${encodeURIComponent(id)}`).then(putJob, setError);
  }, [job && job.state]);
  if (!job) return html`<section><${ErrorBox} error=${error} /></section>`;
  const image = images.get(job.image_id);
  const before = image && image.urls && (image.urls.preview || image.urls.thumbnail);
  const name = image ? `${image.filename.replace(/\.[^.]+$/, "")}-enhanced.jpg` : `${id}.jpg`;

  async function cancel() {
    try {
      const answer = await api.del(`/enhance/${encodeURIComponent(id)}`);
      if (answer) putJob(answer); // the refund arrives as credits.updated
    } catch (e) {
      setError(e);
    }
  }

  return html`<section class="job-page">
    <p><a href=${`#/photo/${encodeURIComponent(job.image_id)}`}>${image ? image.filename : job.image_id}</a></p>
    <h1>${t("job_title")}: ${t(`job_${job.state}`)}</h1>
    <${ErrorBox} error=${error} onDismiss=${() => setError(null)} />
    ${!FINAL_JOB_STATES.has(job.state)
      ? html`<${ProgressBar} value=${(job.progress || 0) / 100} label=${t("progress")} />
          <button type="button" onClick=${cancel}>${t("cancel_job")}</button>`
      : null}
    ${job.state === "failed" && job.error
      ? html`<p class="notice error" role="alert">${job.error.message || job.error.code}</p>`
      : null}
    ${job.state === "completed" && job.result_url
      ? html`${job.faces != null ? html`<p>${t("faces_found", { n: job.faces })}</p>` : null}
          ${(job.notes || []).map((note) => html`<p class="muted">${note}</p>`)}
          <h2>${t("before_after")}</h2>
          ${before
            ? html`<${BeforeAfter}
                before=${before}
                after=${job.result_url}
                beforeAlt=${t("before")}
                afterAlt=${t("after")}
              />`
            : html`<img class="result" src=${job.result_url} alt=${t("after")} />`}
          <p>
            <button type="button" class="primary" onClick=${() => saveUrl(job.result_url, name).catch(setError)}>
              ${t("download_result")}
            </button>
            ${job.width ? html` <span class="muted">${job.width} × ${job.height}</span>` : null}
          </p>`
      : null}
  </section>`;
}

async function downloadZip(batchId, setStatus) {
  for (let attempt = 0; attempt < 60; attempt += 1) {
    const response = await request("GET", `/enhance/batch/${encodeURIComponent(batchId)}/download`, {
      response: true,
    });
    if (response.status === 202) {
      // The exports function is writing the ZIP: come back when the API says (Retry-After).
      const body = await response.json().catch(() => ({}));
      setStatus(body.message || t("preparing_zip"));
      const wait = Number(response.headers.get("retry-after") || body.retry_after || 2);
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, wait) * 1000));
      continue;
    }
    saveBlob(await response.blob(), `photopipe-${batchId}.zip`);
    return;
  }
  throw new Error(t("preparing_zip"));
}

export function BatchPage({ id }) {
  useStore(jobs);
  const [jobIds, setJobIds] = useState([]);
  const [error, setError] = useState(null);
  const [status, setStatus] = useState(null);
  useEffect(() => {
    api.get(`/enhance/batch/${encodeURIComponent(id)}`).then((batch) => {
      batch.jobs.forEach(putJob);
      setJobIds(batch.jobs.map((j) => j.job_id));
    }, setError);
  }, [id]);
  const list = jobIds.map((jid) => jobs.get(jid)).filter(Boolean);
  const finished = list.filter((j) => FINAL_JOB_STATES.has(j.state)).length;
  const completed = list.filter((j) => j.state === "completed").length;

  async function zip() {
    setError(null);
    setStatus(t("preparing_zip"));
    try {
      await downloadZip(id, setStatus);
      setStatus(t("zip_ready", { n: completed }));
    } catch (e) {
      setStatus(null);
      setError(e);
    }
  }

  return html`<section>
    <h1>${t("batch_title")}</h1>
    <p role="status" aria-live="polite">${t("batch_progress", { done: finished, total: list.length })}</p>
    <${ErrorBox} error=${error} onDismiss=${() => setError(null)} />
    ${status ? html`<${Notice}>${status}</${Notice}>` : null}
    <ul class="jobs">
      ${list.map(
        (job) => html`<li>
          <span>${(images.get(job.image_id) || {}).filename || job.image_id}</span>
          <span>${t(`job_${job.state}`)}</span>
          ${FINAL_JOB_STATES.has(job.state)
            ? null
            : html`<${ProgressBar} value=${(job.progress || 0) / 100} label=${t("progress")} />`}
          <a href=${`#/job/${encodeURIComponent(job.job_id)}`}>${t("open_job")}</a>
        </li>`,
      )}
    </ul>
    ${list.length && finished === list.length && completed
      ? html`<button type="button" class="primary" onClick=${zip}>${t("download_zip")}</button>`
      : null}
  </section>`;
}
