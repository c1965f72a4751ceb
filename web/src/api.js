// The page's base URL (…/web/ when served by llmspace, the root on a static Space).
export const BASE = new URL('./', document.baseURI).href;

// The exports, and (served by llmspace) how the server's preparation of them is going.
export async function fetchModels() {
  const res = await fetch(new URL('models/index.json', BASE), { cache: 'no-store' });
  if (!res.ok) throw new Error(`models/index.json: HTTP ${res.status}. Export a model with \`llmspace export onnx\`.`);
  const data = await res.json();
  return { models: data.models ?? [], preparing: data.web_export ?? null };
}

// Same prompt on the server's backends (PyTorch and ONNX Runtime); absent on a static Space.
export async function compareOnServer(body) {
  const res = await fetch(new URL('api/compare', BASE), {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data?.error?.message ?? `server comparison unavailable (HTTP ${res.status})`);
  return data.results;
}

export async function fetchIndex(name) {
  const res = await fetch(new URL(`models/${name}/index.json`, BASE));
  if (!res.ok) throw new Error(`index of ${name}: HTTP ${res.status}`);
  const idx = await res.json();
  const bytes = Uint8Array.from(atob(idx.vectors), (c) => c.charCodeAt(0));
  return { ...idx, matrix: new Float32Array(bytes.buffer) };
}

export const fmt = (x, digits = 2) => (x === undefined || x === null ? '–' : Number(x).toFixed(digits));
export const mib = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
