// Small shared pieces: error and status boxes, state badges, progress, the before/after slider, charts.
import * as fmt from "./format.js";
import { categoryLabel, t } from "./i18n.js";
import { html, useEffect, useRef, useState } from "./lib.js";

/**
 * An API failure in the API's own words, with what the person can do about it: a limit's reset time
 * (429 `error.limit` / `resets_at`), a link to buy credits (402 insufficient_credits).
 */
export function ErrorBox({ error, onDismiss }) {
  if (!error) return null;
  const text = typeof error === "string" ? error : error.message || String(error);
  const code = typeof error === "object" && error.code && error.code !== "network_error" ? error.code : null;
  const detail = (typeof error === "object" && error.body && error.body.error) || {};
  return html`<div class="notice error" role="alert">
    <p><strong>${t("error")}:</strong> ${text}${code ? html` <code>(${code})</code>` : null}</p>
    ${detail.resets_at ? html`<p>${t("limit_resets", { time: fmt.when(detail.resets_at) })}</p>` : null}
    ${code === "insufficient_credits" ? html`<p><a href="#/buy">${t("buy_more_credits")}</a></p>` : null}
    ${onDismiss ? html`<button type="button" class="link" onClick=${onDismiss}>${t("dismiss")}</button>` : null}
  </div>`;
}

export function Notice({ children, kind = "info" }) {
  return html`<div class=${`notice ${kind}`} role="status">${children}</div>`;
}

export function StateBadge({ state }) {
  return html`<span class=${`badge state-${state}`} data-state=${state}>${t(`state_${state}`)}</span>`;
}

export function CategoryChip({ classification }) {
  if (!classification) return null;
  return html`<span class="chip">${categoryLabel(classification)}</span>`;
}

export function ProgressBar({ value, label }) {
  const pct = Math.round(Math.max(0, Math.min(1, value || 0)) * 100);
  return html`<div class="progress">
    <progress max="100" value=${pct} aria-label=${label}>${pct}%</progress>
    <span class="progress-text">${pct}%</span>
  </div>`;
}

/**
 * Before/after comparison. Both pictures fill the same box, whose shape is the result's; each is fitted
 * into it (object-fit: contain), so a 1440 px preview and a 2x result line up whatever their pixel sizes.
 * The range input moves the divide (keyboard: arrow keys), the after picture is clipped to its side.
 */
export function BeforeAfter({ before, after, beforeAlt, afterAlt }) {
  const [position, setPosition] = useState(50);
  const [ratio, setRatio] = useState(null);
  const afterRef = useRef(null);
  useEffect(() => {
    const img = afterRef.current;
    if (img && img.complete && img.naturalWidth) setRatio(img.naturalWidth / img.naturalHeight);
  }, [after]);
  const onLoad = (event) => setRatio(event.target.naturalWidth / event.target.naturalHeight);
  const boxStyle = ratio ? { aspectRatio: String(ratio) } : {};
  return html`<figure class="compare">
    <div class="compare-box" style=${boxStyle}>
      <img class="compare-before" src=${before} alt=${beforeAlt} />
      <img
        class="compare-after"
        ref=${afterRef}
        src=${after}
        alt=${afterAlt}
        onLoad=${onLoad}
        style=${{ clipPath: `inset(0 0 0 ${position}%)` }}
      />
      <div class="compare-line" style=${{ left: `${position}%` }} aria-hidden="true"></div>
      <span class="compare-tag left" aria-hidden="true">${t("before")}</span>
      <span class="compare-tag right" aria-hidden="true">${t("after")}</span>
    </div>
    <label class="compare-control">
      <span>${t("slider")}</span>
      <input
        type="range"
        min="0"
        max="100"
        step="1"
        value=${position}
        onInput=${(e) => setPosition(Number(e.target.value))}
      />
    </label>
  </figure>`;
}

/** Horizontal bars, one row per item: label, bar, number (the numbers are text, so screen readers and
 * copying get them as well as the picture). */
export function BarChart({ rows, label }) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return html`<figure class="chart">
    <div role="img" aria-label=${label} class="hbars">
      ${rows.map(
        (r) => html`<div class="hbar-row">
          <span class="hbar-label">${r.label}</span>
          <span class="hbar-track"><span class="hbar" style=${{ width: `${(r.value / max) * 100}%` }}></span></span>
          <strong class="hbar-value">${r.value}</strong>
        </div>`,
      )}
    </div>
  </figure>`;
}

/** Columns per day for two series (requests and cache hits), each day labelled under its columns. */
export function TrendChart({ days, label }) {
  const max = Math.max(1, ...days.map((d) => d.requests));
  return html`<figure class="chart">
    <div role="img" aria-label=${label} class="columns">
      ${days.map(
        (d) => html`<div class="column-day" title=${`${d.day}: ${d.requests} / ${d.cache_hits}`}>
          <div class="column-bars">
            <span class="column" style=${{ height: `${(d.requests / max) * 100}%` }}></span>
            <span class="column hits" style=${{ height: `${(d.cache_hits / max) * 100}%` }}></span>
          </div>
          <span class="column-label">${d.day.slice(5)}</span>
        </div>`,
      )}
    </div>
    <p class="legend">
      <span class="key requests"></span>${t("trend_requests")} <span class="key hits"></span>${t("trend_hits")}
    </p>
  </figure>`;
}
