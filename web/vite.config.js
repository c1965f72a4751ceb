// Builds the browser app into dist/ (served by llmspace at /web/, or as a static Space).
// base './' keeps every URL relative, so the same build works under /web/ and at a Space's root.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const require = createRequire(import.meta.url);

// onnxruntime-web's WASM runtime (.wasm + its .mjs loader), self-hosted under dist/ort/ so that
// Transformers.js never fetches it from a CDN (see src/worker.js: env.backends.onnx.wasm.wasmPaths).
function selfHostOrtWasm() {
  return {
    name: 'llmspace-self-host-ort-wasm',
    apply: 'build',
    // The ORT bundle also references its .wasm by import.meta.url, which would emit a second
    // 27 MB copy under assets/; wasmPaths points at ort/ instead, so drop that copy.
    generateBundle(_options, bundle) {
      for (const key of Object.keys(bundle)) if (/ort-wasm-simd-threaded.*\.wasm$/.test(key)) delete bundle[key];
    },
    writeBundle(options) {
      const ortDist = dirname(require.resolve('onnxruntime-web'));
      const out = join(options.dir, 'ort');
      mkdirSync(out, { recursive: true });
      for (const f of readdirSync(ortDist)) {
        if (/^ort-wasm-simd-threaded\.asyncify\.(wasm|mjs)$/.test(f)) copyFileSync(join(ortDist, f), join(out, f));
      }
    },
  };
}

export default defineConfig({
  base: './',
  plugins: [react(), selfHostOrtWasm()],
  worker: { format: 'es' },
  build: { target: 'es2022', chunkSizeWarningLimit: 4000, sourcemap: false },
});
