// k6 script: streaming chat completions (each iteration reads one whole SSE stream).
//   k6 run -e URL=http://127.0.0.1:8080 -e MODEL=bench-model --vus 32 --duration 10s loadtest/stream.k6.js
import http from 'k6/http';
import { check } from 'k6';

const URL = __ENV.URL || 'http://127.0.0.1:8080';
const MODEL = __ENV.MODEL || 'bench-model';
const body = JSON.stringify({
  model: MODEL,
  stream: true,
  messages: [{ role: 'user', content: 'Say hello in one short sentence please.' }],
  max_tokens: 16,
});
const params = { headers: { 'Content-Type': 'application/json' } };

export default function () {
  const r = http.post(`${URL}/v1/chat/completions`, body, params);
  check(r, { 'status 200': (x) => x.status === 200, 'ends with [DONE]': (x) => x.body.includes('[DONE]') });
}
