// The API docs page (/api/docs): Swagger UI, served from the swagger-ui-py package's
// files under /api/docs/static, drawing this server's own /api/openapi.json.
// "Try it out" calls this server; the host key goes in under "Authorize".
"use strict";

window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
  validatorUrl: null, // never send the document to an outside validator
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
