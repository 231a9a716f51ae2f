// What to run to trust a host key that is not known yet. A host behind a
// bastion has an address only the bastion reaches: `ssh-keyscan ADDRESS` from
// the operator's machine cannot work, so its key is fetched through the bastion.

/** The parts of an SSH endpoint the advice names. */
export interface AdviceEndpoint {
  address: string;
  port: number;
  user: string;
  identityFile?: string;
}

/** `'it'` quoted for a POSIX shell when it needs to be. */
function sh(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./~[\]-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * The ways to record an unknown key in `file`: ssh-keyscan from here for a host
 * reached directly (a bastion); for a host behind `bastion`, ssh-keyscan run on
 * the bastion, or ssh through it (-J), which shows the key and asks first.
 */
export function unknownKeyAdvice(target: AdviceEndpoint, file: string, bastion?: AdviceEndpoint): string {
  const kh = sh(file);
  if (!bastion) return `or add it with ssh-keyscan -p ${target.port} ${sh(target.address)} >> ${kh}`;
  const key = bastion.identityFile ? ` -i ${sh(bastion.identityFile)}` : '';
  const at = `${sh(bastion.user)}@${sh(bastion.address)}`;
  const jump = `${sh(bastion.user)}@${bastion.address.includes(':') ? `[${bastion.address}]` : sh(bastion.address)}:${bastion.port}`;
  return (
    `or fetch it through the bastion (${target.address} is reached from the bastion, not from here): ` +
    `ssh${key} -o UserKnownHostsFile=${kh} -p ${bastion.port} ${at} ssh-keyscan -p ${target.port} ${sh(target.address)} >> ${kh} ` +
    `(ssh-keyscan runs on the bastion), or ssh${key} -J ${jump} -o UserKnownHostsFile=${kh} -p ${target.port} ` +
    `${sh(target.user)}@${sh(target.address)} true (shows the key's fingerprint and asks before recording it)`
  );
}
