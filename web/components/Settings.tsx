"use client";
// Settings, for admins: API keys (a new key is shown once, with a copy button; revoke; when
// each was last used), the people who sign in and their roles, and the audit log.

import ScrollTable from "@/components/ScrollTable";
import { useCallback, useState, type FormEvent } from "react";
import Confirm from "@/components/Confirm";
import Copy from "@/components/Copy";
import { useMe } from "@/components/Shell";
import { api, type ApiKey, type ApiKeyCreated, type AuditEntry, type Page, type Scope, type User } from "@/lib/api";
import { formatAgo, formatTime } from "@/lib/format";
import { usePoll, type Polled } from "@/lib/poll";

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function ApiKeys({ onChange }: { onChange: () => void }) {
  const keys = usePoll(useCallback(() => api.get<Page<ApiKey>>("/api/v1/api-keys"), []), 15_000);
  const [name, setName] = useState("");
  const [scope, setScope] = useState<Scope>("read");
  const [made, setMade] = useState<ApiKeyCreated>();
  const [error, setError] = useState<string>();

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    try {
      setMade(await api.post<ApiKeyCreated>("/api/v1/api-keys", { name, scope }));
      setName("");
      keys.reload();
      onChange();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const revoke = async (k: ApiKey) => {
    setError(undefined);
    try {
      await api.delete(`/api/v1/api-keys/${encodeURIComponent(k.id)}`);
      keys.reload();
      onChange();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <section aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      <form onSubmit={(e) => void create(e)} className="inline-form">
        <label htmlFor="key-name">Name</label>
        <input id="key-name" value={name} required maxLength={63} onChange={(e) => setName(e.target.value)} />
        <label htmlFor="key-scope">Scope</label>
        <select id="key-scope" value={scope} onChange={(e) => setScope(e.target.value as Scope)}>
          <option value="read">read (watch)</option>
          <option value="operate">operate (also act on pipelines)</option>
          <option value="admin">admin (everything)</option>
        </select>
        <p>
          <button type="submit" className="primary">Create key</button>
        </p>
      </form>
      {made && (
        <div className="alert warning" role="status" data-new-key={made.key.id}>
          <p>
            The key <strong>{made.key.name}</strong> ({made.key.scope}). Copy it now: it is not shown again.
          </p>
          <Copy text={made.token} label="the new API key" />
        </div>
      )}
      {error && <p className="alert critical" role="alert">{error}</p>}
      {keys.error && <p className="alert critical" role="alert">{keys.error.message}</p>}
      {keys.data && (
        <ScrollTable label="API keys table" columns={["Key", "Scope", "Created", "Last used", "State"]}>
          {keys.data.items.map((k) => (
            <tr key={k.id} data-key={k.name}>
              <th scope="row">{k.name} <span className="muted">{k.id}</span></th>
              <td>{k.scope}</td>
              <td>{formatTime(k.created_at)} by {k.created_by}</td>
              <td>{formatAgo(k.last_used_at)}</td>
              <td>
                {k.revoked_at ? (
                  `revoked ${formatAgo(k.revoked_at)}`
                ) : (
                  <Confirm label={`Revoke ${k.name}`} title={`Revoke the key ${k.name}?`} confirm="Revoke" danger
                    onConfirm={() => revoke(k)}>
                    <p>Every request with this key is refused from now on. Whatever uses it stops working.</p>
                  </Confirm>
                )}
              </td>
            </tr>
          ))}
        </ScrollTable>
      )}
    </section>
  );
}

function Users({ onChange }: { onChange: () => void }) {
  const users = usePoll(useCallback(() => api.get<Page<User>>("/api/v1/users"), []), 15_000);
  const [form, setForm] = useState({ username: "", role: "viewer", password: "" });
  const [error, setError] = useState<string>();
  const [notice, setNotice] = useState<string>();

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    setNotice(undefined);
    try {
      const u = await api.post<User>("/api/v1/users", form);
      setNotice(`${u.username} can sign in now, as ${u.role}.`);
      setForm({ username: "", role: "viewer", password: "" });
      users.reload();
      onChange();
    } catch (err) {
      setError(errorText(err));
    }
  };
  const setRole = async (u: User, role: string) => {
    setError(undefined);
    try {
      await api.patch(`/api/v1/users/${u.id}`, { role });
      setNotice(`${u.username} is ${role} now.`);
      users.reload();
      onChange();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <section aria-labelledby="users-title">
      <h2 id="users-title">People</h2>
      <form onSubmit={(e) => void create(e)}>
        <label htmlFor="user-name">User name</label>
        <input id="user-name" value={form.username} required maxLength={63}
          onChange={(e) => setForm((f) => ({ ...f, username: e.target.value }))} />
        <label htmlFor="user-role">Role</label>
        <select id="user-role" value={form.role} onChange={(e) => setForm((f) => ({ ...f, role: e.target.value }))}>
          <option value="viewer">viewer (watch)</option>
          <option value="operator">operator (also act on pipelines)</option>
          <option value="admin">admin (everything)</option>
        </select>
        <label htmlFor="user-password">Password (at least 12 characters)</label>
        <input id="user-password" type="password" autoComplete="new-password" value={form.password} required
          onChange={(e) => setForm((f) => ({ ...f, password: e.target.value }))} />
        <p>
          <button type="submit" className="primary">Add person</button>
        </p>
      </form>
      {error && <p className="alert critical" role="alert">{error}</p>}
      {notice && <p className="alert" role="status">{notice}</p>}
      {users.data && (
        <ScrollTable label="People table" columns={["User", "Role", "Last sign-in", "State"]}>
          {users.data.items.map((u) => (
            <tr key={u.id} data-user={u.username}>
              <th scope="row">{u.username}</th>
              <td>
                <label htmlFor={`role-${u.id}`} className="visually-hidden">Role of {u.username}</label>
                <select id={`role-${u.id}`} value={u.role} onChange={(e) => void setRole(u, e.target.value)}>
                  <option value="viewer">viewer</option>
                  <option value="operator">operator</option>
                  <option value="admin">admin</option>
                </select>
              </td>
              <td>{formatAgo(u.last_login_at)}</td>
              <td>{u.disabled_at ? `disabled ${formatAgo(u.disabled_at)}` : "active"}</td>
            </tr>
          ))}
        </ScrollTable>
      )}
    </section>
  );
}

function Audit({ audit }: { audit: Polled<Page<AuditEntry>> }) {
  return (
    <section aria-labelledby="audit-title">
      <h2 id="audit-title">Audit log</h2>
      {audit.error && <p className="alert critical" role="alert">{audit.error.message}</p>}
      {audit.data && (
        <ScrollTable label="Audit log table" columns={["When", "Who", "What", "On", "From"]}>
          {audit.data.items.map((a) => (
            <tr key={a.id} data-action={a.action}>
              <td>{formatTime(a.at)}</td>
              <td>{a.actor}</td>
              <th scope="row">{a.action}</th>
              <td>{a.resource}</td>
              <td>{a.remote ?? "—"}</td>
            </tr>
          ))}
        </ScrollTable>
      )}
    </section>
  );
}

export default function Settings() {
  const me = useMe();
  // The audit log shows each change made here at once.
  const admin = me?.scope === "admin";
  const audit = usePoll(
    useCallback(
      () => (admin ? api.get<Page<AuditEntry>>("/api/v1/audit") : Promise.resolve<Page<AuditEntry>>({ items: [] })),
      [admin],
    ),
    15_000,
  );
  if (!admin) {
    return (
      <main>
        <h1>Settings</h1>
        <p className="muted">Settings are for admins: ask one for what you need.</p>
      </main>
    );
  }
  return (
    <main>
      <h1>Settings</h1>
      <ApiKeys onChange={audit.reload} />
      <Users onChange={audit.reload} />
      <Audit audit={audit} />
    </main>
  );
}
