// validate.js - checks docs/openapi.json with @apidevtools/swagger-parser (OpenAPI 3.0 schema
// validation plus its own checks: $refs resolve, operationIds are unique, path parameters are
// declared). Usage: node validate.js [FILE]. Prints "valid: ..." and exits 0, or the error and 1.
"use strict";
const path = require("path");
const SwaggerParser = require("@apidevtools/swagger-parser");

const file = process.argv[2] || path.join(__dirname, "..", "..", "..", "docs", "openapi.json");
SwaggerParser.validate(file)
  .then((api) => {
    const ops = Object.values(api.paths).reduce((n, p) => n + Object.keys(p).length, 0);
    console.log(`valid: ${file}: OpenAPI ${api.openapi}, ${Object.keys(api.paths).length} paths, ${ops} operations`);
  })
  .catch((err) => {
    console.error(`invalid: ${file}: ${err.message}`);
    process.exit(1);
  });
