import Shell from "@/components/Shell";
import Settings from "@/components/Settings";

export default function SettingsPage() {
  return (
    <Shell>
      <Settings />
    </Shell>
  );
}
