// Sign in / create an account.
import { api, startSession } from "../api.js";
import { ErrorBox, Notice } from "../components.js";
import { t } from "../i18n.js";
import { html, useState } from "../lib.js";
import { go } from "../shared.js";

export function AuthPage({ mode, ended }) {
  const registering = mode === "register";
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  async function submit(event) {
    event.preventDefault();
    const form = new FormData(event.target);
    setError(null);
    setBusy(true);
    try {
      const answer = registering
        ? await api.post(
            "/auth/register",
            { username: form.get("username"), email: form.get("email"), password: form.get("password") },
            { auth: false },
          )
        : await api.post(
            "/auth/login",
            { username: form.get("login"), password: form.get("password") },
            { auth: false },
          );
      startSession(answer);
      go("/");
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }

  const title = registering ? t("register") : t("sign_in");
  return html`<section class="auth card">
    <h1>${title}</h1>
    <p class="muted">${t("welcome")}</p>
    ${ended && !registering ? html`<${Notice} kind="warning">${t("session_ended")}</${Notice}>` : null}
    <${ErrorBox} error=${error} />
    <form onSubmit=${submit} novalidate=${false}>
      ${registering
        ? html`<label for="username">${t("username")}</label>
            <input id="username" name="username" autocomplete="username" required minlength="3"
              maxlength="32" pattern="[A-Za-z0-9_.\\-]{3,32}" aria-describedby="username-hint" />
            <p id="username-hint" class="hint">${t("username_hint")}</p>
            <label for="email">${t("email")}</label>
            <input id="email" name="email" type="email" autocomplete="email" required />`
        : html`<label for="login">${t("username_or_email")}</label>
            <input id="login" name="login" autocomplete="username" required />`}
      <label for="password">${t("password")}</label>
      <input id="password" name="password" type="password" required minlength=${registering ? 8 : 1}
        autocomplete=${registering ? "new-password" : "current-password"}
        aria-describedby=${registering ? "password-hint" : undefined} />
      ${registering ? html`<p id="password-hint" class="hint">${t("password_hint")}</p>` : null}
      <button type="submit" class="primary" disabled=${busy}>${busy ? t("signing_in") : title}</button>
    </form>
    <p>
      ${registering ? t("have_account") : t("no_account")}
      <a href=${registering ? "#/login" : "#/register"}>${registering ? t("sign_in") : t("register")}</a>
    </p>
  </section>`;
}
