// Package mcpe2e holds the end-to-end tests of the MCP endpoint, driven by
// an MCP client nobody here wrote: the official TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in testdata/tsclient) run with node
// through InstallTSClient and RunTSClient.
package mcpe2e
