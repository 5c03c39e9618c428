// Test helper: group names as Active Directory / Entra ID send them — varied, realistic, reproducible.

/** `n` distinct names like `SG-Finance-EMEA-SharePoint-Readers` (a seeded generator: the same list every run). */
export function adGroupNames(n: number, seed = 42): string[] {
  let s = seed;
  const rnd = () => { s = (s * 1103515245 + 12345) & 0x7fffffff; return s / 0x7fffffff; };
  const pick = (a: readonly string[]) => a[Math.floor(rnd() * a.length)]!;
  const prefix = ['SG', 'GG', 'DL', 'APP', 'RBAC', 'O365', 'AZ', 'SEC', 'FS', 'VPN'];
  const dept = ['Finance', 'HumanResources', 'Engineering', 'Sales', 'Marketing', 'Legal', 'IT', 'Operations', 'CustomerSupport', 'Research',
    'Procurement', 'Facilities', 'Security', 'DataPlatform', 'Payroll', 'Treasury', 'Audit', 'Compliance', 'Logistics', 'Manufacturing'];
  const site = ['EMEA', 'AMER', 'APAC', 'DE-Berlin', 'US-NYC', 'UK-London', 'FR-Paris', 'JP-Tokyo', 'IN-Pune', 'BR-SaoPaulo', 'CA-Toronto', 'AU-Sydney'];
  const app = ['SharePoint', 'Jira', 'Confluence', 'SAP', 'Salesforce', 'Workday', 'ServiceNow', 'Tableau', 'PowerBI', 'GitHub', 'Jenkins',
    'Splunk', 'Okta', 'AWS-Prod', 'AWS-Dev', 'Azure-Sub', 'Teams', 'FileShare', 'Citrix', 'Oracle-EBS'];
  const role = ['Readers', 'Contributors', 'Owners', 'Approvers', 'Admins', 'Users', 'Members', 'Editors', 'Viewers', 'Operators'];
  const out = new Set<string>();
  while (out.size < n) out.add(`${pick(prefix)}-${pick(dept)}-${pick(site)}-${pick(app)}-${pick(role)}${rnd() < 0.3 ? `-${Math.floor(rnd() * 1000)}` : ''}`);
  return [...out];
}

/** `n` Entra ID group object ids (random GUIDs, what Entra sends by default): they barely compress. */
export function entraGroupIds(n: number): string[] {
  return Array.from({ length: n }, () => crypto.randomUUID());
}
