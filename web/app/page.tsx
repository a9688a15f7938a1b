import Shell from "@/components/Shell";
import Overview from "@/components/Overview";

export default function Home() {
  return (
    <Shell>
      <Overview />
    </Shell>
  );
}
