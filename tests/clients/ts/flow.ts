// A partner's flow typed by the document alone: generated/schema.d.ts comes from
// /api/v1/openapi.json (openapi-typescript), requests go through openapi-fetch. Compiled with
// tsc --strict by tests/integration/test_openapi_clients.py; no `any`, no `as` casts.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema";

type Schemas = components["schemas"];
type Transfer = Schemas["TransferOut"];
type Problem = Schemas["ProblemOut"];

const PASSWORD = "correct horse battery staple";
const PIN = "2468";

export interface Bank {
  baseUrl: string;
  adminToken: string;
  settle: (transferId: string) => Promise<void>;
}

function fail(what: string, problem: Problem | undefined, response: Response): never {
  throw new Error(`${what}: ${response.status} ${problem?.code ?? ""} ${problem?.detail ?? ""}`);
}

function client(baseUrl: string, token?: string) {
  return createClient<paths>({ baseUrl, headers: token ? { Authorization: `Bearer ${token}` } : {} });
}

async function customer(bank: Bank, email: string): Promise<{ token: string; accountId: string }> {
  const pub = client(bank.baseUrl);
  const admin = client(bank.baseUrl, bank.adminToken);
  const reg = await pub.POST("/api/v1/auth/register", {
    body: { email, password: PASSWORD, full_name: "Ada", currency: "USD" },
  });
  if (!reg.data) fail("register", reg.error, reg.response);
  const kyc = await admin.POST("/api/v1/admin/users/{user_id}/kyc", {
    params: { path: { user_id: reg.data.user.id } },
    body: { decision: "APPROVE" },
  });
  if (!kyc.data || kyc.data.kyc_status !== "APPROVED") fail("kyc", kyc.error, kyc.response);
  const tokens = await pub.POST("/api/v1/auth/login", { body: { email, password: PASSWORD } });
  if (!tokens.data) fail("login", tokens.error, tokens.response);
  const me = client(bank.baseUrl, tokens.data.access_token);
  const pin = await me.PUT("/api/v1/me/pin", { body: { pin: PIN } });
  if (pin.response.status !== 204) fail("pin", pin.error, pin.response);
  return { token: tokens.data.access_token, accountId: reg.data.account.id };
}

export async function flow(bank: Bank, tag: string): Promise<void> {
  const admin = client(bank.baseUrl, bank.adminToken);
  const alice = await customer(bank, `alice-${tag}@example.com`);
  const bob = await customer(bank, `bob-${tag}@example.com`);
  const a = client(bank.baseUrl, alice.token);
  const b = client(bank.baseUrl, bob.token);

  const deposit = await admin.POST("/api/v1/admin/accounts/{account_id}/deposits", {
    params: { path: { account_id: alice.accountId }, header: { "Idempotency-Key": `deposit-${tag}` } },
    body: { amount: 10_000, currency: "USD", reference: "opening" },
  });
  if (!deposit.data) fail("deposit", deposit.error, deposit.response);

  const send: Schemas["TransferIn"] = {
    source_account_id: alice.accountId,
    destination_account_id: bob.accountId,
    amount: 2_500,
    currency: "USD",
    pin: PIN,
    reference: "invoice 1",
  };
  const sendKey = { "Idempotency-Key": `send-${tag}` };
  const accepted = await a.POST("/api/v1/transfers", { params: { header: sendKey }, body: send });
  if (!accepted.data || accepted.response.status !== 202) fail("transfer", accepted.error, accepted.response);
  const transfer: Transfer = accepted.data;
  const location: string | null = accepted.response.headers.get("Location");
  await bank.settle(transfer.id);
  const polled = await a.GET("/api/v1/transfers/{transfer_id}", { params: { path: { transfer_id: transfer.id } } });
  if (!polled.data || polled.data.status !== "COMPLETED") fail("poll", polled.error, polled.response);
  const completedAt: string | null = polled.data.completed_at;
  const replay = await a.POST("/api/v1/transfers", { params: { header: sendKey }, body: send });
  if (!replay.data || replay.response.headers.get("Idempotent-Replayed") !== "true") {
    fail("replay", replay.error, replay.response);
  }

  const now = Date.now();
  const statement = await a.GET("/api/v1/accounts/{account_id}/statement", {
    params: {
      path: { account_id: alice.accountId },
      query: { from: new Date(now - 3_600_000).toISOString(), to: new Date(now + 3_600_000).toISOString() },
    },
  });
  // JSON unless the request asks for text/csv: the type offers both, the JSON one is narrowed.
  if (!statement.data || typeof statement.data === "string") fail("statement", statement.error, statement.response);
  const closing: number | null = statement.data.closing_balance;
  const amounts: number[] = statement.data.entries.map((entry) => entry.amount);

  const held = await a.POST("/api/v1/transfers", {
    params: { header: { "Idempotency-Key": `hold-${tag}` } },
    body: { ...send, amount: 1_000, hold: true, reference: null },
  });
  if (!held.data) fail("hold", held.error, held.response);
  await bank.settle(held.data.id);
  const captured = await a.POST("/api/v1/transfers/{transfer_id}/capture", {
    params: { path: { transfer_id: held.data.id }, header: { "Idempotency-Key": `capture-${tag}` } },
    body: { amount: 600 },
  });
  if (!captured.data || captured.data.captured_amount !== 600) fail("capture", captured.error, captured.response);
  const refund = await b.POST("/api/v1/transfers/{transfer_id}/refunds", {
    params: { path: { transfer_id: held.data.id }, header: { "Idempotency-Key": `refund-${tag}` } },
    body: { amount: 100, reason: "partial" },
  });
  if (!refund.data || refund.data.refund_of !== held.data.id) fail("refund", refund.error, refund.response);
  await bank.settle(refund.data.id);
  const refunded = await b.GET("/api/v1/transfers/{transfer_id}", { params: { path: { transfer_id: refund.data.id } } });
  if (refunded.data?.status !== "COMPLETED") fail("refund settled", refunded.error, refunded.response);

  const refused = await a.POST("/api/v1/transfers", {
    params: { header: { "Idempotency-Key": `wrong-${tag}` } },
    body: { ...send, amount: 1, pin: "0000" },
  });
  const code: Schemas["ProblemCode"] | undefined = refused.error?.code;
  if (refused.response.status !== 403 || code !== "INVALID_PIN") fail("wrong pin", refused.error, refused.response);
  console.log(location, completedAt, closing, amounts, refused.error?.refundable);
}
