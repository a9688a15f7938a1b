import type { NextConfig } from "next";

// The dashboard is one Node server (`output: "standalone"`, what the image runs). It reaches
// `philotes api` only through its own /api route (app/api/[...path]/route.ts), so the session
// cookie stays first-party and the API's address is read at run time, not baked into the build.
const config: NextConfig = {
  output: "standalone",
  poweredByHeader: false,
  reactStrictMode: true,
  async headers() {
    return [
      {
        source: "/:path*",
        headers: [
          { key: "X-Frame-Options", value: "DENY" },
          { key: "X-Content-Type-Options", value: "nosniff" },
          { key: "Referrer-Policy", value: "same-origin" },
        ],
      },
    ];
  },
};

export default config;
