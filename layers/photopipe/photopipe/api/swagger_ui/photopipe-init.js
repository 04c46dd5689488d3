// Starts Swagger UI on this API's own OpenAPI document (a file, not an inline script: the page's CSP
// allows scripts from 'self' only).
window.addEventListener("load", () => {
  window.ui = window.SwaggerUIBundle({
    url: new URL("openapi.json", window.location.href).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
  });
});
