// OpenSSH material for the lab: keys, per-host sshd_config, known_hosts and a
// client config, plus the account files that give a host its non-root user.
import { createHmac, randomBytes } from 'node:crypto';
import { chmod, chown, copyFile, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runChecked } from './proc.js';

export async function generateKey(file: string, comment: string): Promise<string> {
  await runChecked(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
  return (await readFile(`${file}.pub`, 'utf8')).trim();
}

export interface SshdConfigInput {
  port: number;
  hostKey: string;
  pidFile: string;
  authorizedKeysFile: string;
}

export function renderSshdConfig(c: SshdConfigInput): string {
  return [
    '# fleetfw lab sshd (one per host namespace)',
    `Port ${c.port}`,
    'ListenAddress 0.0.0.0',
    'ListenAddress ::',
    `HostKey ${c.hostKey}`,
    `PidFile ${c.pidFile}`,
    `AuthorizedKeysFile ${c.authorizedKeysFile}`,
    'PermitRootLogin prohibit-password',
    'PubkeyAuthentication yes',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    // Without PAM, sshd itself checks the shadow entry; lab users carry `*`.
    'UsePAM no',
    // Key files live in a temp dir whose modes sshd would otherwise reject.
    'StrictModes no',
    'AllowTcpForwarding yes',
    'MaxStartups 100:30:200',
    'MaxSessions 50',
    'LogLevel VERBOSE',
    'UseDNS no',
    'PrintMotd no',
    'PrintLastLog no',
    'X11Forwarding no',
    'Subsystem sftp internal-sftp',
    '',
  ].join('\n');
}

/** OpenSSH's hashed host form: |1|base64(salt)|base64(HMAC-SHA1(salt, host)). */
export function hashKnownHostName(name: string, salt: Buffer = randomBytes(20)): string {
  const mac = createHmac('sha1', salt).update(name).digest('base64');
  return `|1|${salt.toString('base64')}|${mac}`;
}

/** `name` for port 22, `[name]:port` otherwise (what ssh looks up). */
export function knownHostName(name: string, port: number): string {
  return port === 22 ? name : `[${name}]:${port}`;
}

export interface KnownHostInput {
  name: string;
  port: number;
  /** Written in clear, comma-joined on one line. */
  plain: string[];
  /** Written hashed, one line each, so parsers meet both forms. */
  hashed: string[];
  /** `ssh-ed25519 AAAA… comment` */
  publicKey: string;
}

export function renderKnownHosts(entries: KnownHostInput[]): string {
  const lines: string[] = ['# fleetfw lab known_hosts'];
  for (const e of entries) {
    const key = e.publicKey.split(/\s+/).slice(0, 2).join(' ');
    if (e.plain.length > 0) lines.push(`${e.plain.map((n) => knownHostName(n, e.port)).join(',')} ${key}`);
    for (const h of e.hashed) lines.push(`${hashKnownHostName(knownHostName(h, e.port))} ${key}`);
  }
  return lines.join('\n') + '\n';
}

export interface ClientHostInput {
  name: string;
  hostName: string;
  user: string;
  port: number;
}

export function renderClientConfig(hosts: ClientHostInput[], identityFile: string, knownHostsFile: string): string {
  const lines: string[] = ['# fleetfw lab ssh client config (ssh -F this-file)'];
  // Per-host blocks first: ssh keeps the first value it obtains for each option.
  for (const h of hosts) {
    lines.push(`Host ${h.name}`, `  HostName ${h.hostName}`, `  User ${h.user}`, `  Port ${h.port}`, `  IdentityFile ${identityFile}`, '');
  }
  // Repeated here (not only on the command line) because ssh does not pass -o to the ProxyJump hop.
  lines.push(
    'Host *',
    `  UserKnownHostsFile ${knownHostsFile}`,
    '  GlobalKnownHostsFile /dev/null',
    '  StrictHostKeyChecking yes',
    `  IdentityFile ${identityFile}`,
    '  IdentitiesOnly yes',
    '  BatchMode yes',
    '  ConnectTimeout 10',
    '  LogLevel ERROR',
    '',
  );
  return lines.join('\n');
}

export interface AccountBinds {
  /** [source, target] pairs to bind-mount inside the host's mount namespace. */
  binds: Array<[string, string]>;
}

/**
 * Builds private copies of /etc/passwd, /etc/group, /etc/shadow and /etc/sudoers.d
 * that add `user` with passwordless sudo. The machine's own files are never written.
 */
export async function prepareUserAccount(user: string, hostDir: string, homeInHost = join(hostDir, `home-${user}`)): Promise<AccountBinds> {
  const etc = join(hostDir, 'etc');
  await mkdir(etc, { recursive: true });
  const passwd = await readFile('/etc/passwd', 'utf8');
  const group = await readFile('/etc/group', 'utf8');
  const shadow = await readFile('/etc/shadow', 'utf8');
  // Created here; the passwd entry names it as the host sees it (homeInHost).
  const homeDir = join(hostDir, `home-${user}`);
  await mkdir(homeDir, { recursive: true });

  const existing = passwd.split('\n').find((l) => l.split(':')[0] === user);
  let newPasswd: string;
  let newGroup = group;
  let newShadow: string;
  let uid: number;
  let gid: number;
  if (existing) {
    const f = existing.split(':');
    uid = Number(f[2]);
    gid = Number(f[3]);
    // Keep the account but give it our home and a real shell.
    newPasswd = passwd.replace(existing, [f[0], f[1], f[2], f[3], f[4], homeInHost, '/bin/sh'].join(':'));
    newShadow = shadow
      .split('\n')
      .map((l) => (l.split(':')[0] === user ? [user, '*', ...l.split(':').slice(2)].join(':') : l))
      .join('\n');
  } else {
    uid = pickFreeId(passwd, 2);
    gid = pickFreeId(group, 2);
    newPasswd = appendLine(passwd, `${user}:x:${uid}:${gid}:fleetfw lab:${homeInHost}:/bin/sh`);
    newGroup = appendLine(group, `${user}:x:${gid}:`);
    // `*` (not `!`): no password, but the account is not locked, so pubkey login works without PAM.
    newShadow = appendLine(shadow, `${user}:*:19000:0:99999:7:::`);
  }
  await chown(homeDir, uid, gid);

  const files: Array<[string, string]> = [
    ['passwd', newPasswd],
    ['group', newGroup],
    ['shadow', newShadow],
  ];
  const binds: Array<[string, string]> = [];
  for (const [name, text] of files) {
    const src = join(etc, name);
    await writeFile(src, text);
    const st = await stat(`/etc/${name}`);
    await chmod(src, st.mode & 0o7777);
    await chown(src, st.uid, st.gid);
    binds.push([src, `/etc/${name}`]);
  }

  const sudoers = join(etc, 'sudoers.d');
  await mkdir(sudoers, { recursive: true });
  // Explicit modes: a umask of 077 must not hide the files from the user (or sudo).
  await chmod(sudoers, 0o755);
  for (const f of await readdir('/etc/sudoers.d').catch(() => [] as string[])) {
    await copyFile(join('/etc/sudoers.d', f), join(sudoers, f));
  }
  const rule = join(sudoers, 'fleetfw-lab');
  await writeFile(rule, `${user} ALL=(ALL) NOPASSWD: ALL\n`);
  await chmod(rule, 0o440);
  binds.push([sudoers, '/etc/sudoers.d']);
  return { binds };
}

function appendLine(text: string, line: string): string {
  return (text.endsWith('\n') || text === '' ? text : text + '\n') + line + '\n';
}

/** First id >= 2000 not used in field `field` of a passwd/group style file. */
function pickFreeId(text: string, field: number): number {
  const used = new Set(text.split('\n').map((l) => Number(l.split(':')[field])));
  let id = 2000;
  while (used.has(id)) id++;
  return id;
}
