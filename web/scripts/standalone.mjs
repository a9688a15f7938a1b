// `next build` leaves the browser's assets out of the standalone server: put them in, so
// `node .next/standalone/server.js` (what the image runs) serves the whole dashboard.
import { cpSync, existsSync } from "node:fs";

cpSync(".next/static", ".next/standalone/.next/static", { recursive: true });
if (existsSync("public")) cpSync("public", ".next/standalone/public", { recursive: true });
