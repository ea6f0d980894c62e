// A scripted MCP client on the official TypeScript SDK, for the Go tests of
// e2e/mcp (see ../../tsclient.go).
//
//   MCP_URL=http://127.0.0.1:8080/mcp MCP_TOKEN=secret node client.mjs '[{"op":"listTools"}]'
//
// The script (argv[2], or stdin when absent) is a JSON list of steps, run in
// order. One JSON document goes to stdout:
//   {"protocolVersion", "serverInfo", "serverCapabilities", "instructions",
//    "results": [each step's raw result, or {"error": message, "code"?}]}
// A failed step doesn't stop the script. Exit status: 0 once connected,
// 1 when the connection (initialize) fails, 2 on a bad script or environment;
// the reason goes to stderr.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const ops = {
  ping: (c) => c.ping(),
  listTools: (c, s) => c.listTools(s.params),
  callTool: (c, s) => c.callTool({ name: s.name, arguments: s.arguments }),
  listResources: (c, s) => c.listResources(s.params),
  listResourceTemplates: (c, s) => c.listResourceTemplates(s.params),
  readResource: (c, s) => c.readResource({ uri: s.uri }),
  listPrompts: (c, s) => c.listPrompts(s.params),
  getPrompt: (c, s) => c.getPrompt({ name: s.name, arguments: s.arguments }),
};

function fail(status, msg) {
  process.stderr.write(`tsclient: ${msg}\n`);
  process.exit(status);
}

async function readStdin() {
  let text = '';
  for await (const chunk of process.stdin) text += chunk;
  return text;
}

const url = process.env.MCP_URL;
if (!url) fail(2, 'MCP_URL is not set');
let steps;
try {
  steps = JSON.parse(process.argv[2] ?? (await readStdin()));
} catch (err) {
  fail(2, `bad script: ${err.message}`);
}
if (!Array.isArray(steps)) fail(2, 'bad script: not a JSON list of steps');

// The header goes out only with a token, so a test can also try none.
const headers = process.env.MCP_TOKEN ? { Authorization: `Bearer ${process.env.MCP_TOKEN}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: 'sandbox-router-e2e-tsclient', version: '0.0.0' });
try {
  await client.connect(transport);
} catch (err) {
  const status = err instanceof StreamableHTTPError && err.code ? ` (HTTP ${err.code})` : '';
  fail(1, `connect ${url}: ${err.message}${status}`);
}

const results = [];
for (const step of steps) {
  const op = ops[step.op];
  try {
    if (!op) throw new Error(`unknown op ${JSON.stringify(step.op)}`);
    results.push(await op(client, step));
  } catch (err) {
    results.push(typeof err.code === 'number' ? { error: err.message, code: err.code } : { error: err.message });
  }
}

const out = {
  protocolVersion: transport.protocolVersion,
  serverInfo: client.getServerVersion(),
  serverCapabilities: client.getServerCapabilities(),
  instructions: client.getInstructions(),
  results,
};
// Ending the session (HTTP DELETE) is courtesy: a server may refuse it.
await transport.terminateSession().catch(() => {});
await client.close();
process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
