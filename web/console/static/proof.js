// Walks each audit row's inclusion proof to its batch's root in the browser (WebCrypto SHA-256),
// the same climb a client runs (examples/verify_audit.py): leaf = sha256(0x00 || row_hash),
// node = sha256(0x01 || left || right). Served as a file: the console's CSP allows no inline script.
"use strict";

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

function bytesToHex(bytes) {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(prefix, ...parts) {
  const total = 1 + parts.reduce((n, p) => n + p.length, 0);
  const data = new Uint8Array(total);
  data[0] = prefix;
  let at = 1;
  for (const p of parts) { data.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

async function climb(rowHash, proof) {
  let node = await sha256(0, hexToBytes(rowHash));
  for (const step of proof) {
    const sibling = hexToBytes(step.sibling);
    node = step.side === "left" ? await sha256(1, sibling, node) : await sha256(1, node, sibling);
  }
  return bytesToHex(node);
}

async function checkAll() {
  for (const cell of document.querySelectorAll("td.proof")) {
    if (!window.crypto || !crypto.subtle) { cell.textContent = "not checked (no WebCrypto on this page)"; continue; }
    const root = await climb(cell.dataset.rowHash, JSON.parse(cell.dataset.proof));
    const ok = root === cell.dataset.root;
    cell.textContent = ok ? "proof leads to the root" : "PROOF DOES NOT LEAD TO THE ROOT";
    cell.className = "proof " + (ok ? "ok" : "bad");
    cell.dataset.verified = ok ? "true" : "false";
  }
}

document.addEventListener("DOMContentLoaded", checkAll);
