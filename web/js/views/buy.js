// Buy credits: the price list, a WeChat Pay Native order shown as a QR code drawn here from its code_url,
// and the order's state: order.updated over the live updates (or asked for when the person says they have
// paid), the balance from credits.updated. On the local stack (config.json's wechat_sandbox) the sandbox's
// "pay" button makes WeChat Pay's sandbox send its signed notify to the real callback.
import { api, getConfig, sandboxPay } from "../api.js";
import { ErrorBox, Notice } from "../components.js";
import * as fmt from "../format.js";
import { t } from "../i18n.js";
import { html, useEffect, useRef, useState } from "../lib.js";
import { onLive } from "../live.js";
import { currentCredits, onCredits, refreshCredits } from "../shared.js";
import { drawQr } from "../qr.js";

function Qr({ text }) {
  const ref = useRef(null);
  useEffect(() => {
    if (ref.current) drawQr(ref.current, text);
  }, [text]);
  return html`<canvas ref=${ref} class="qr" role="img" aria-label=${t("qr_label")} data-code-url=${text}></canvas>`;
}

export function BuyPage() {
  const [packages, setPackages] = useState(null);
  const [order, setOrder] = useState(null);
  const [error, setError] = useState(null);
  const [balance, setBalance] = useState(currentCredits());
  useEffect(() => onCredits(setBalance), []);
  useEffect(() => {
    api.get("/payments/packages", { auth: false }).then(setPackages, setError);
    refreshCredits();
  }, []);
  const [sandboxSent, setSandboxSent] = useState(false);
  const check = async (id) => {
    try {
      setOrder(await api.get(`/payments/orders/${encodeURIComponent(id)}`));
    } catch (e) {
      setError(e);
    }
  };
  const orderId = order && order.order_id;
  useEffect(
    () =>
      onLive((message) => {
        if (!orderId) return;
        if (message.type === "order.updated" && message.order_id === orderId) {
          setOrder((known) => (known && known.order_id === orderId ? { ...known, state: message.state } : known));
        } else if (message.type === "live.reconnected") {
          check(orderId); // catch up on what the dropped connection may have missed
        }
      }),
    [orderId],
  );

  async function buy(pkg) {
    setError(null);
    setSandboxSent(false);
    try {
      setOrder(await api.post("/payments/orders", { package_id: pkg.package_id, method: "native" }));
    } catch (e) {
      setError(e);
    }
  }

  async function payInSandbox() {
    setError(null);
    try {
      await sandboxPay(order.order_id); // the notify goes to the callback; order.updated follows
      setSandboxSent(true);
    } catch (e) {
      setError(e);
    }
  }

  const price = (amount) => `¥${(amount / 100).toFixed(2)}`; // as the API words it (PackageOut.price)
  return html`<section>
    <h1>${t("buy_title")}</h1>
    ${balance != null ? html`<p>${t("balance", { n: balance })}</p>` : null}
    <${ErrorBox} error=${error} onDismiss=${() => setError(null)} />
    ${packages && !packages.payments_enabled ? html`<${Notice} kind="warning">${t("payments_off")}</${Notice}>` : null}
    ${packages
      ? html`<ul class="packages">
          ${packages.packages.map(
            (p) => html`<li class="card">
              <p class="big">${p.credits}</p>
              <p class="muted">${p.description}</p>
              <button type="button" class="primary" disabled=${!packages.payments_enabled} onClick=${() => buy(p)}>
                ${t("buy_package", { credits: p.credits, price: p.price || price(p.amount) })}
              </button>
            </li>`,
          )}
        </ul>`
      : html`<p role="status">${t("loading")}</p>`}
    ${order
      ? html`<div class="card order">
          <p role="status" aria-live="polite">
            ${t("order_state", { id: order.order_id, state: t(`order_${order.state}`) })}
          </p>
          ${order.state === "paid"
            ? html`<${Notice} kind="success">${t("paid_thanks", { n: order.credits })}</${Notice}>`
            : order.code_url && order.state === "pending"
              ? html`<p>${t("scan_to_pay", { price: price(order.amount) })}</p>
                  <${Qr} text=${order.code_url} />
                  <p class="muted">${t("expires", { time: fmt.when(order.expires_at) })}</p>
                  <div class="actions">
                    <button type="button" onClick=${() => check(order.order_id)}>${t("check_payment")}</button>
                    ${getConfig().wechat_sandbox
                      ? html`<button type="button" onClick=${payInSandbox} disabled=${sandboxSent}>
                          ${t("sandbox_pay")}
                        </button>`
                      : null}
                  </div>
                  ${sandboxSent ? html`<p class="muted" role="status">${t("sandbox_sent")}</p>` : null}`
              : null}
        </div>`
      : null}
  </section>`;
}
