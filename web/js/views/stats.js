// Statistics (administrators): today's figures, photos per category, the 7-day trend, the prompt in use and
// the GPU fleet, refreshed every 30 s. Nothing is asked for until GET /profile says the user is an admin
// (the API answers anyone else 403 admin_only): a plain user is told the page is not for them.
import { api } from "../api.js";
import { BarChart, ErrorBox, Notice, TrendChart } from "../components.js";
import * as fmt from "../format.js";
import { categoryLabel, t } from "../i18n.js";
import { html, useEffect, useState } from "../lib.js";
import { isAdmin, useProfile } from "../shared.js";

const REFRESH_MS = 30_000;

async function loadAll() {
  const [today, cache, categories, prompt, fleet] = await Promise.all([
    api.get("/stats/today"),
    api.get("/stats/cache?days=7"),
    api.get("/stats/categories?days=7"),
    api.get("/stats/prompt"),
    api.get("/stats/fleet"),
  ]);
  return { today, cache, categories, prompt, fleet, at: new Date() };
}

/** A message whose `backticked` parts are commands: shown as code, not with the backticks. */
function withCode(text) {
  return text.split("`").map((part, i) => (i % 2 ? html`<code>${part}</code>` : part));
}

function Figure({ label, value }) {
  return html`<div class="figure"><dt>${label}</dt><dd>${value}</dd></div>`;
}

export function StatsPage({ session }) {
  const profile = useProfile();
  const admin = profile !== null && isAdmin(session);
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!admin) return undefined;
    let stopped = false;
    const refresh = () =>
      loadAll().then(
        (value) => {
          if (stopped) return;
          setData(value);
          setError(null);
        },
        (e) => !stopped && setError(e),
      );
    refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [admin]);

  if (profile === null) {
    return html`<section><h1>${t("stats_title")}</h1><p role="status">${t("loading")}</p></section>`;
  }
  if (profile.error && !admin) {
    return html`<section><h1>${t("stats_title")}</h1><${ErrorBox} error=${profile.error} /></section>`;
  }
  if (!admin || (error && error.code === "admin_only")) {
    const user = (session && session.user && session.user.username) || "USERNAME";
    return html`<section>
      <h1>${t("stats_title")}</h1>
      <${Notice} kind="warning">${withCode(t("stats_admin_only", { user }))}</${Notice}>
    </section>`;
  }
  if (!data) {
    return html`<section><h1>${t("stats_title")}</h1>${error ? html`<${ErrorBox} error=${error} />` : html`<p role="status">${t("loading")}</p>`}</section>`;
  }
  const { today, cache, categories, prompt, fleet } = data;
  return html`<section class="stats">
    <h1>${t("stats_title")}</h1>
    <p class="muted" role="status">${t("stats_refreshed", { time: fmt.time(data.at) })}</p>
    <${ErrorBox} error=${error} />
    <h2>${t("today")} (${today.day})</h2>
    <dl class="figures">
      <${Figure} label=${t("requests")} value=${fmt.number(today.requests)} />
      <${Figure} label=${t("exact_hits")} value=${fmt.number(today.exact_hits)} />
      <${Figure} label=${t("near_hits")} value=${fmt.number(today.near_hits)} />
      <${Figure} label=${t("hit_rate")} value=${fmt.percent(today.hit_rate, 1)} />
      <${Figure} label=${t("model_calls")} value=${fmt.number(today.llm_calls)} />
      <${Figure}
        label=${t("tokens")}
        value=${`${fmt.number(today.input_tokens)} / ${fmt.number(today.output_tokens)}`}
      />
      <${Figure} label=${t("cost")} value=${fmt.money(today.estimated_cost, today.currency)} />
      <${Figure} label=${t("cost_saved")} value=${fmt.money(today.cost_saved, today.currency)} />
    </dl>
    <div class="two">
      <div>
        <h2>${t("per_category")}</h2>
        <${BarChart}
          label=${t("chart_categories")}
          rows=${categories.categories.map((c) => ({ label: categoryLabel(c), value: c.count }))}
        />
      </div>
      <div>
        <h2>${t("trend")}</h2>
        <${TrendChart} label=${t("chart_trend")} days=${cache.days} />
        <table>
          <caption class="visually-hidden">${t("trend")}</caption>
          <thead><tr><th scope="col">${t("day")}</th><th scope="col">${t("requests")}</th><th scope="col">${t("hit_rate")}</th><th scope="col">${t("model_calls")}</th></tr></thead>
          <tbody>
            ${cache.days.map(
              (d) => html`<tr><th scope="row">${d.day}</th><td>${d.requests}</td><td>${fmt.percent(d.hit_rate)}</td><td>${d.llm_calls}</td></tr>`,
            )}
          </tbody>
        </table>
      </div>
    </div>
    <h2>${t("prompt")}</h2>
    <p>${t("prompt_version", { v: prompt.version, m: prompt.model })}</p>
    <pre class="prompt" tabindex="0" aria-label=${t("prompt")}>${prompt.text}</pre>
    <h2>${t("fleet")}</h2>
    ${fleet.servers.length
      ? html`<table>
          <thead><tr><th scope="col">${t("worker")}</th><th scope="col">${t("health")}</th><th scope="col">${t("provider")}</th><th scope="col">${t("max_batch")}</th><th scope="col">${t("heartbeat")}</th></tr></thead>
          <tbody>
            ${fleet.servers.map(
              (w) => html`<tr>
                <th scope="row">${w.worker_id}</th>
                <td>${w.healthy ? t("healthy") : t("unhealthy")}</td>
                <td>${w.provider || "–"}</td>
                <td>${w.max_batch ?? "–"}</td>
                <td>${fmt.when(w.heartbeat_at)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : html`<p class="muted">${t("no_workers")}</p>`}
  </section>`;
}
