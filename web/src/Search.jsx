import { useState } from 'react';
import { BASE, fetchIndex } from './api.js';

// Retrieval in the browser: embed the query with the exported embedding model, cosine against
// the exported index (vectors are unit length, so a dot product).
export default function Search({ models }) {
  const indexed = models.filter((m) => m.has_index);
  const [name, setName] = useState('');
  const [query, setQuery] = useState('');
  const [hits, setHits] = useState([]);
  const [note, setNote] = useState('');
  const [cache] = useState(() => new Map());
  if (!indexed.length) return null;
  const chosen = name || indexed[0].name;

  const search = async () => {
    setNote('Searching…');
    try {
      if (!cache.has(chosen)) cache.set(chosen, await fetchIndex(chosen));
      const idx = cache.get(chosen);
      const [q] = await window.llmspace.embed(chosen, [query]);
      const scores = idx.chunks.map((c, i) => {
        let s = 0;
        for (let d = 0; d < idx.dim; d += 1) s += q[d] * idx.matrix[i * idx.dim + d];
        return { ...c, score: s };
      });
      setHits(scores.sort((a, b) => b.score - a.score).slice(0, 5));
      setNote('');
    } catch (e) {
      setNote(String(e.message ?? e));
    }
  };

  return (
    <section className="search">
      <h2>Search (in the browser)</h2>
      <div className="row">
        <select value={chosen} onChange={(e) => setName(e.target.value)}>
          {indexed.map((m) => <option key={m.name}>{m.name}</option>)}
        </select>
        <input id="search-query" value={query} onChange={(e) => setQuery(e.target.value)} placeholder="Search the index…"
          onKeyDown={(e) => e.key === 'Enter' && search()} />
        <button id="search-run" onClick={search} disabled={!query.trim()}>Search</button>
      </div>
      {note && <p className="note">{note}</p>}
      <ol id="search-hits">
        {hits.map((h, i) => <li key={i}><b>{h.score.toFixed(3)}</b> <small>{h.source}</small> {h.text}</li>)}
      </ol>
    </section>
  );
}
