// Small shared pieces: error and status boxes, state badges, progress, the before/after slider, charts.
import { categoryLabel, t } from "./i18n.js";
import { html, useEffect, useRef, useState } from "./lib.js";

export function ErrorBox({ error, onDismiss }) {
  if (!error) return null;
  const text = typeof error === "string" ? error : error.message || String(error);
  const code = typeof error === "object" && error.code && error.code !== "network_error" ? error.code : null;
  return html`<div class="notice error" role="alert">
    <p><strong>${t("error")}:</strong> ${text}${code ? html` <code>(${code})</code>` : null}</p>
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

/** Horizontal bars (SVG) with the numbers in a table beside them for screen readers and copying. */
export function BarChart({ rows, label }) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  const rowHeight = 28;
  const width = 100;
  return html`<figure class="chart">
    <svg
      role="img"
      aria-label=${label}
      viewBox=${`0 0 ${width} ${rows.length * rowHeight}`}
      preserveAspectRatio="none"
      class="bars"
      style=${{ height: `${rows.length * rowHeight}px` }}
    >
      ${rows.map(
        (r, i) =>
          html`<rect
            x="0"
            y=${i * rowHeight + 6}
            height=${rowHeight - 12}
            width=${(r.value / max) * width}
            class="bar"
          ><title>${r.label}: ${r.value}</title></rect>`,
      )}
    </svg>
    <ol class="bar-labels">
      ${rows.map((r) => html`<li><span>${r.label}</span><strong>${r.value}</strong></li>`)}
    </ol>
  </figure>`;
}

/** Columns per day for two series (requests and cache hits). */
export function TrendChart({ days, label }) {
  const max = Math.max(1, ...days.map((d) => d.requests));
  const w = 100 / Math.max(1, days.length);
  return html`<figure class="chart">
    <svg role="img" aria-label=${label} viewBox="0 0 100 60" preserveAspectRatio="none" class="trend">
      ${days.map((d, i) => {
        const h = (d.requests / max) * 56;
        const hh = (d.cache_hits / max) * 56;
        return html`<g>
          <rect x=${i * w + w * 0.1} y=${58 - h} width=${w * 0.38} height=${h} class="bar"
            ><title>${d.day}: ${d.requests} ${t("trend_requests")}</title></rect
          >
          <rect x=${i * w + w * 0.52} y=${58 - hh} width=${w * 0.38} height=${hh} class="bar hits"
            ><title>${d.day}: ${d.cache_hits} ${t("trend_hits")}</title></rect
          >
        </g>`;
      })}
    </svg>
    <p class="legend">
      <span class="key requests"></span>${t("trend_requests")} <span class="key hits"></span>${t("trend_hits")}
    </p>
  </figure>`;
}
