// Routing, input side: which peers may tell us about the original request (X-Forwarded-*,
// X-Request-Id, forward-auth's X-Forwarded-Uri). Compiled once from `trustProxy`.
import { BlockList, isIP } from 'node:net';

export type PeerTrust = (remoteAddress: string | undefined) => boolean;

export function compilePeerTrust(trustProxy: boolean | readonly string[]): PeerTrust {
  if (trustProxy === true) return () => true;
  if (trustProxy === false || trustProxy.length === 0) return () => false;
  const list = new BlockList();
  for (const entry of trustProxy) {
    const [addr, bits] = entry.split('/');
    const type = isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
    if (bits !== undefined) list.addSubnet(addr!, Number(bits), type);
    else list.addAddress(addr!, type);
  }
  return (remote) => {
    if (!remote) return false;
    const addr = remote.startsWith('::ffff:') ? remote.slice(7) : remote;
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    return list.check(addr, type);
  };
}

/** Config check for one trustProxy entry: an IP address or CIDR. */
export function isAddressOrCidr(s: string): boolean {
  const [addr, bits, extra] = s.split('/');
  if (extra !== undefined || !addr || !isIP(addr)) return false;
  if (bits === undefined) return true;
  const max = isIP(addr) === 6 ? 128 : 32;
  return /^\d+$/.test(bits) && Number(bits) <= max;
}
