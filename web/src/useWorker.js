// One Transformers.js worker per page; request/response by id, plus a stream of events.
import { useEffect, useRef } from 'react';

export function useWorker(onEvent) {
  const ref = useRef(null);
  const pending = useRef(new Map());
  const handler = useRef(onEvent);
  handler.current = onEvent;

  useEffect(() => {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    worker.addEventListener('message', ({ data }) => {
      const waiting = data.id !== undefined && pending.current.get(data.id);
      if (waiting && ['done', 'embedded', 'error'].includes(data.type)) {
        pending.current.delete(data.id);
        if (data.type === 'error') waiting.reject(new Error(data.message));
        else waiting.resolve(data);
      }
      handler.current(data);
    });
    ref.current = worker;
    return () => worker.terminate();
  }, []);

  const counter = useRef(0);
  // Shared stop flag (see worker.js); only where the page is cross-origin isolated.
  const stopFlag = useRef(typeof SharedArrayBuffer !== 'undefined' && self.crossOriginIsolated
    ? new SharedArrayBuffer(4) : null);
  const post = (msg) => ref.current.postMessage(msg);
  // Send a message and wait for its 'done' / 'embedded' / 'error' answer.
  const request = (msg) => new Promise((resolve, reject) => {
    const id = `${msg.idPrefix ?? 'req'}-${(counter.current += 1)}`;
    pending.current.set(id, { resolve, reject });
    post({ ...msg, id, stopFlag: stopFlag.current });
  });
  const stop = () => {
    if (stopFlag.current) Atomics.store(new Int32Array(stopFlag.current), 0, 1);
    post({ type: 'stop' });
  };
  return { post, request, stop };
}
